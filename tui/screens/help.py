"""The help screen: every key of the app and of each job screen, generated from their bindings."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

INTRODUCTION = (
    "cmsgen: inspect legacy CMS files, read the missing-field report, train generative models, "
    "follow runs and validate synthetic events. Keys 1-5 switch screens, as the tabs in the header "
    "show. Ctrl+P opens the command palette, which lists the screens and the actions of the screen "
    "shown. A training run is a separate process, so quitting the app or losing the SSH connection "
    "does not stop it."
)


# Keys that widgets handle themselves, listed under the screen that shows the widget.
WIDGET_KEYS: dict[str, list[tuple[str, str]]] = {
    "Files": [
        ("j / k", "Move down / up in the tree"),
        ("l / h", "Open / close a node (also right / left)"),
    ],
    "Report": [
        ("left / right", "Previous / next table, when the tab bar has the focus (tab moves the focus)"),
        ("j / k", "Move down / up in a table"),
    ],
    "Validate": [("j / k", "Move down / up in the table of figures")],
    "Train": [("tab / shift+tab", "Move between the fields of the form")],
}


def binding_rows(bindings: list[BindingType], key_display: Callable[[Binding], str]) -> list[tuple[str, str]]:
    """Return (key, description) for each described binding, with keys as ``key_display`` shows them."""
    rows = []
    for binding in bindings:
        if isinstance(binding, Binding) and binding.description:
            rows.append((key_display(binding), binding.description))
    return rows


def bindings_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """Build a two-column table (key, action) of ``rows`` under ``title``."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("action")
    for key, description in rows:
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

        key_display = self.app.get_key_display
        with VerticalScroll(id="help-box"):
            yield Static(INTRODUCTION, id="help-introduction")
            yield Static(bindings_table("Everywhere", binding_rows(list(CmsgenApp.BINDINGS), key_display)))
            screens = [self.origin.__class__] + [
                screen for screen in CmsgenApp.MODES.values() if screen is not self.origin.__class__
            ]
            for screen in screens:
                if isinstance(screen, type):
                    title = getattr(screen, "TITLE", None) or screen.__name__
                    rows = binding_rows(list(screen.BINDINGS), key_display) + WIDGET_KEYS.get(title, [])
                    yield Static(bindings_table(title, rows))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
