"""The cmsgen Textual app: one screen per job, switched with the number keys.

Screens are Textual modes (files, report, train, runs, validate), so each keeps
its state while another is shown. The app stores what the screens share: the
dataset paths, the dataset the user selected on the Files screen, the runs
directory and the run the user last picked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from cmsgen.tui.screens.error import ErrorScreen
from cmsgen.tui.screens.files import FilesScreen
from cmsgen.tui.screens.help import HelpScreen
from cmsgen.tui.screens.report import ReportScreen
from cmsgen.tui.screens.runs import RunsScreen
from cmsgen.tui.screens.train import TrainScreen
from cmsgen.tui.screens.validate import ValidateScreen

log = logging.getLogger(__name__)

# Mode name -> (key, title) of each job screen, in the order of the number keys.
SCREEN_KEYS: dict[str, tuple[str, str]] = {
    "files": ("1", "Files"),
    "report": ("2", "Report"),
    "train": ("3", "Train"),
    "runs": ("4", "Runs"),
    "validate": ("5", "Validate"),
}


class CmsgenApp(App[None]):
    """Browse legacy CMS files, read the missing-field report, train, follow and validate runs."""

    TITLE = "cmsgen"
    CSS_PATH = "app.tcss"
    MODES: ClassVar = {
        "files": FilesScreen,
        "report": ReportScreen,
        "train": TrainScreen,
        "runs": RunsScreen,
        "validate": ValidateScreen,
    }
    # The footer leaves out the number keys, because the header lists them as tabs
    # (see format_title). That leaves room for the screen's own keys at 80 columns.
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(key, f"switch_mode('{mode}')", title, show=False, key_display=key)
            for mode, (key, title) in SCREEN_KEYS.items()
        ),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        paths: Sequence[Path] = (),
        runs_dir: Path = Path("runs"),
        *,
        initial_mode: str = "files",
        attach_run: Path | None = None,
    ) -> None:
        super().__init__()
        self.dataset_paths: list[Path] = [Path(path) for path in paths] or [Path.cwd()]
        # The paths of the dataset, directory or file under the Files screen's cursor;
        # the Report screen reports on them. None until the user selects one.
        self.selected_paths: list[Path] | None = None
        self.runs_dir = Path(runs_dir)
        self.current_run: Path | None = Path(attach_run) if attach_run else None
        self.initial_mode = "train" if attach_run else initial_mode

    def on_mount(self) -> None:
        log.info("app started on %s with runs directory %s", [str(p) for p in self.dataset_paths], self.runs_dir)
        self.switch_mode(self.initial_mode)

    def format_title(self, title: str, sub_title: str) -> Content:
        """Show the screens as tabs with their keys in the header, the one shown highlighted.

        Screens without a tab (help, errors) show their own title and the tabs dimmed.
        """
        parts: list[Content | tuple[str, str]] = []
        for key, name in SCREEN_KEYS.values():
            style = "reverse bold" if name == title else "dim"
            parts.append((f" {key} {name} ", style))
            parts.append(" ")
        tabs = Content.assemble(*parts)
        if title not in {name for _, name in SCREEN_KEYS.values()}:
            tabs = Content.assemble((title, "bold"), "  ", tabs)
        if sub_title:
            tabs = Content.assemble(tabs, (" ", ""), Content(sub_title).stylize("dim"))
        return tabs

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Log and show the error of a worker that failed with an unexpected exception."""
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            error = worker.error
            log.error("worker %r failed", worker.description or worker.name, exc_info=error)
            self.show_error(
                f"{worker.description or worker.name} failed".capitalize(),
                f"{type(error).__name__}: {error}. The traceback is in the log file.",
            )

    def show_error(self, title: str, message: str) -> None:
        """Log an error and show it in a modal.

        Callers log the details (such as the traceback) before they call this method.
        """
        log.error("%s: %s", title, message)
        self.push_screen(ErrorScreen(title, message))

    def select_dataset(self, paths: Sequence[Path]) -> None:
        """Make ``paths`` the selected dataset, which the Report screen reports on when it is shown next."""
        self.selected_paths = [Path(path) for path in paths]

    def report_paths(self) -> list[Path]:
        """Return the paths the Report screen reports on: the selected dataset, else every path of the app."""
        return list(self.selected_paths or self.dataset_paths)

    def select_run(self, run_dir: Path, mode: str | None = None) -> None:
        """Make ``run_dir`` the current run and optionally switch to the screen ``mode``.

        The Train and Validate screens pick up the current run when they are shown.
        """
        self.current_run = Path(run_dir)
        if mode is not None:
            self.switch_mode(mode)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, (key, title) in SCREEN_KEYS.items():
            yield SystemCommand(f"Go to {title}", f"Show the {title} screen (key {key})", partial(self.switch_mode, mode))
        yield SystemCommand("Help", "List every key of every screen (key ?)", self.action_help)
        for binding in getattr(screen, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description:
                yield SystemCommand(
                    f"{screen.TITLE or type(screen).__name__}: {binding.description}",
                    f"key {self.get_key_display(binding)}",
                    partial(screen.run_action, binding.action),
                )

    def _handle_exception(self, error: Exception) -> None:
        # NOTE: overrides a private Textual 8 method, so that an unexpected error in a
        # handler is logged and shown in a modal instead of closing the app with a traceback.
        log.exception("unexpected error in the app", exc_info=error)
        try:
            self.show_error(
                "Unexpected error",
                f"{type(error).__name__}: {error}. The traceback is in the log file, and the app keeps running.",
            )
        except Exception:  # noqa: BLE001 - the modal failed too, so fall back to Textual's handling
            super()._handle_exception(error)
