"""The help screen: every key of the app and of each job screen, generated from their bindings."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

INTRODUCTION = (
    "cmsgen: inspect legacy CMS files, read the missing-field report, train generative models, "
    "follow runs and validate synthetic events. Keys 1-5 switch screens; Ctrl+P opens the command "
    "palette, which lists every action below. A training run is a separate process: quitting the "
    "app or losing the SSH connection does not stop it."
)


def binding_rows(bindings: list[BindingType]) -> list[tuple[str, str]]:
    """Return (key, description) for each described binding, with keys shown as Textual displays them."""
    rows = []
    for binding in bindings:
        if isinstance(binding, Binding) and binding.description:
            key = binding.key_display or binding.key.replace("question_mark", "?")
            rows.append((key, binding.description))
    return rows


def bindings_table(title: str, bindings: list[BindingType]) -> Table:
    """Build a two-column table (key, action) of the described bindings under ``title``."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("action")
    for key, description in binding_rows(bindings):
        table.add_row(key, description)
    return table


class HelpScreen(ModalScreen[None]):
    """Scrollable list of the keys of the app, of the screen that opened it and of every other screen."""

    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close help"),
    ]

    def __init__(self, origin: Screen) -> None:
        super().__init__()
        self.origin = origin

    def compose(self) -> ComposeResult:
        from cmsgen.tui.app import CmsgenApp

        with VerticalScroll(id="help-box"):
            yield Static(INTRODUCTION, id="help-introduction")
            yield Static(bindings_table("Everywhere", list(CmsgenApp.BINDINGS)))
            screens = [self.origin.__class__] + [
                screen for screen in CmsgenApp.MODES.values() if screen is not self.origin.__class__
            ]
            for screen in screens:
                if isinstance(screen, type):
                    title = getattr(screen, "TITLE", None) or screen.__name__
                    yield Static(bindings_table(title, list(screen.BINDINGS)))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
