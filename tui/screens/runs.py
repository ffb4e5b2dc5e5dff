"""The Runs screen: every run directory with its state, and keys to attach, validate or stop one.

Runs are found by their ``status.json``, so a run started headless, from
another terminal or before the app opened shows up like any other. The list is
read in a thread worker every two seconds.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from cmsgen.tui.widgets.metrics_tail import find_run_dirs, model_label, read_status
from cmsgen.tui.widgets.run_monitor import process_alive
from cmsgen.tui.widgets.tables import fill_table

log = logging.getLogger(__name__)

# Seconds between two listings of the runs directory.
REFRESH_PERIOD = 2.0
COLUMNS = ("run", "state", "model", "features", "progress", "step", "best w1_mass", "updated")
STATE_STYLES = {"running": "bold green", "finished": "cyan", "stopped": "yellow", "failed": "bold red", "crashed": "bold red"}


class RunsListed(Message):
    def __init__(self, runs: list[tuple[Path, dict[str, Any]]]) -> None:
        super().__init__()
        self.runs = runs


def effective_state(status: dict[str, Any]) -> str:
    """Return the run's state, or "crashed" for a "running" run whose process no longer exists."""
    state = str(status.get("state", "unknown"))
    if state == "running" and not process_alive(status.get("pid")):
        return "crashed"
    return state


def run_row(run_dir: Path, status: dict[str, Any]) -> tuple[str, ...]:
    """Return the table cells of one run, in the order of ``COLUMNS``, with the state in Rich markup."""
    state = effective_state(status)
    progress = status.get("progress")
    best = status.get("best_metric")
    return (
        run_dir.name,
        f"[{STATE_STYLES.get(state, '')}]{state}[/]" if state in STATE_STYLES else state,
        model_label(status),
        str(status.get("feature_set", "?")),
        f"{progress:.0%}" if isinstance(progress, (int, float)) else "-",
        f"{status.get('step', 0)}/{status.get('total_steps', '?')}",
        f"{best:.4g}" if isinstance(best, (int, float)) else "-",
        str(status.get("updated", "-"))[:19].replace("T", " "),
    )


class RunsScreen(Screen[None]):
    """Table of every run in the runs directory. Enter attaches the Train screen's panels to the selected run."""

    TITLE = "Runs"
    CSS_PATH = "runs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        # A priority binding, because the focused DataTable's own Enter binding would
        # otherwise take the key and hide this one from the footer.
        Binding("enter", "attach", "Attach", priority=True),
        Binding("v", "validate", "Open in Validate"),
        Binding("x", "stop", "Stop"),
        Binding("ctrl+r", "refresh", "Refresh"),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[Path, dict[str, Any]]] = []
        self._rows: list[tuple[str, tuple[str, ...]]] = []
        self.listed = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Reading the runs directory…", id="runs-summary")
        table: DataTable[str] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        fill_table(self.query_one(DataTable), COLUMNS, [])
        self.action_refresh()
        self.set_interval(REFRESH_PERIOD, self.action_refresh)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self._list_runs(self.app.runs_dir)  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False, description="list runs")
    def _list_runs(self, runs_dir: Path) -> None:
        runs = []
        for run_dir in find_run_dirs(runs_dir):
            status = read_status(run_dir)
            if status is not None:
                runs.append((run_dir, status))
        self.post_message(RunsListed(runs))

    def on_runs_listed(self, message: RunsListed) -> None:
        table = self.query_one(DataTable)
        selected = self.selected_run()
        self.runs = message.runs
        rows = [(str(run_dir), run_row(run_dir, status)) for run_dir, status in self.runs]
        # Rebuild the table only when a run changed, so that the cursor and the scroll position stay put.
        if rows != self._rows:
            self._rows = rows
            fill_table(table, COLUMNS, [row for _, row in rows], keys=[key for key, _ in rows])
            if selected is not None:
                for index, (run_dir, _) in enumerate(self.runs):
                    if run_dir == selected:
                        table.move_cursor(row=index)
        self.listed = True
        runs_dir = self.app.runs_dir  # type: ignore[attr-defined]
        self.query_one("#runs-summary", Static).update(
            f"{len(self.runs)} run(s) in {runs_dir}. Enter attaches, v opens Validate, x stops the selected run."
            if self.runs
            else f"No runs in {runs_dir} yet. Start one on the Train screen (3) or with `cmsgen-tui train`."
        )

    def selected_run(self) -> Path | None:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or not 0 <= table.cursor_row < len(self.runs):
            return None
        return self.runs[table.cursor_row][0]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_attach()

    def action_cursor(self, direction: str) -> None:
        """Move the table's cursor, for the vim keys j and k."""
        table = self.query_one(DataTable)
        if direction == "down":
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_attach(self) -> None:
        run_dir = self.selected_run()
        if run_dir is None:
            self.notify("No run selected.", severity="warning")
            return
        self.app.select_run(run_dir, "train")  # type: ignore[attr-defined]

    def action_validate(self) -> None:
        run_dir = self.selected_run()
        if run_dir is None:
            self.notify("No run selected.", severity="warning")
            return
        self.app.select_run(run_dir, "validate")  # type: ignore[attr-defined]

    def action_stop(self) -> None:
        run_dir = self.selected_run()
        if run_dir is None:
            self.notify("No run selected.", severity="warning")
            return
        status = read_status(run_dir) or {}
        pid = status.get("pid")
        if effective_state(status) != "running" or not isinstance(pid, int):
            self.notify(f"Run {run_dir.name} is not running.", severity="warning")
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.notify(f"Process {pid} has already ended.", severity="warning")
            return
        log.info("sent SIGTERM to process %d of run %s", pid, run_dir)
        self.notify(f"Stopping run {run_dir.name}: it saves a checkpoint first.")
