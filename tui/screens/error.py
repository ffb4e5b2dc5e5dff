"""A modal that shows an error as one readable message, with the path of the log file."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from cmsgen.engine.logs import log_path


class ErrorScreen(ModalScreen[None]):
    """Modal with an error message and the log file path. Escape, Enter or the Close button closes it."""

    CSS_PATH = "error.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("enter", "dismiss", "Close", show=False),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.error_title = title
        self.error_message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(self.error_title, id="error-title")
            yield Static(self.error_message, id="error-message", markup=False)
            yield Static(f"Details: {log_path()}", id="error-log", markup=False)
            yield Button("Close", id="error-close", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
