"""The Validate screen: validate a run in a worker, read its figures and compare histograms.

``cmsgen.engine.validation.report.validate_run`` runs in a thread worker that
posts its progress. The table lists every figure with its real-versus-real
baseline and a pass/warn/fail mark. The plot shows the real and generated
histograms of the variable under the cursor, with a ratio panel.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, ProgressBar, Select, Static

from cmsgen.tui.widgets.metrics_tail import find_run_dirs
from cmsgen.tui import plots
from cmsgen.tui.widgets.plot_view import PlotView
from cmsgen.tui.widgets.tables import KeyTable, fill_table

log = logging.getLogger(__name__)

COLUMNS = ("mark", "variable", "figure", "value", "baseline")
# Column caps that keep every column on an 80-column screen; the line under the
# table shows the full text of the row under the cursor.
MAX_WIDTHS = {"variable": 16, "figure": 12, "value": 17, "baseline": 17}
VERDICT_MARKS = {"pass": "[green]✔ pass[/]", "warn": "[yellow]! warn[/]", "fail": "[bold red]✘ fail[/]", "skipped": "[dim]- skip[/]"}
DEFAULT_EVENTS = "2000"


class ValidationProgress(Message):
    """Progress of a validation: the fraction done and the current step.

    A newer message replaces an older one that is still pending.
    """

    def __init__(self, fraction: float, step: str) -> None:
        super().__init__()
        self.fraction = fraction
        self.step = step

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ValidationProgress)


class ValidationDone(Message):
    """A finished validation, or, with ``loaded`` set, a ``validation.json`` read from the run."""

    def __init__(self, run_dir: Path, report: dict[str, Any], loaded: bool = False) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.report = report
        self.loaded = loaded


class ValidationFailed(Message):
    def __init__(self, run_dir: Path, reason: str) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.reason = reason


def has_checkpoint(run_dir: Path) -> bool:
    """Return whether ``run_dir`` contains a saved model, so that it can generate events."""
    return any((run_dir / "checkpoints" / f"{name}.pt").is_file() for name in ("best", "last"))


def figure_histogram_indices(report: dict[str, Any]) -> list[int | None]:
    """Return the index of the univariate variable behind each leading row of ``summary_rows(report)``.

    ``summary_rows`` lists one row per figure of each univariate variable first, in
    order. Rows past the end of the returned list have no histogram.
    """
    indices: list[int | None] = []
    for index, variable in enumerate(report.get("univariate") or []):
        indices.extend([index] * len(variable.get("figures") or {}))
    return indices


class ValidateScreen(Screen[None]):
    """Screen that validates the selected run and compares real and generated distributions."""

    TITLE = "Validate"
    CSS_PATH = "validate.tcss"
    AUTO_FOCUS = "#validate-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Validate"),
        Binding("p", "toggle_plot", "Full plot"),
        Binding("ctrl+r", "reload_runs", "Reload runs"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] | None = None
        self.row_variables: list[int | None] = []
        self.running = False
        self.rows: list[dict[str, str]] = []
        # The run whose results the table shows, or None while it shows none.
        self.shown_run: Path | None = None
        # The app's current run when the run list was last filled.
        self._seen_current: Path | None = None
        self.run_count = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="validate-form"):
            yield Label("Run ")
            yield Select([], prompt="run", compact=True, id="validate-run")
            yield Label(" Events ")
            yield Input(DEFAULT_EVENTS, compact=True, id="validate-events", type="integer")
        with Horizontal(id="validate-progress-row"):
            yield ProgressBar(total=1.0, show_eta=False, id="validate-progress")
            yield Static("Pick a run and press s to validate it.", id="validate-step")
        table: DataTable[str] = KeyTable(id="validate-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="validate-row")
        yield PlotView("The histograms of the variable under the cursor appear here.", id="validate-plot")
        yield Footer()

    def on_mount(self) -> None:
        fill_table(self.query_one(DataTable), COLUMNS, [])
        self.action_reload_runs()

    def on_screen_resume(self) -> None:
        self.action_reload_runs()

    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_reload_runs(self) -> None:
        runs_dir: Path = self.app.runs_dir  # type: ignore[attr-defined]
        # Only runs with a checkpoint can generate events; a run that failed at set-up has none.
        run_dirs = [run_dir for run_dir in find_run_dirs(runs_dir) if has_checkpoint(run_dir)]
        select = self.query_one("#validate-run", Select)
        current = getattr(self.app, "current_run", None)
        previous = select.value
        select.set_options([(run_dir.name, str(run_dir)) for run_dir in run_dirs])
        self.run_count = len(run_dirs)
        names = {str(run_dir) for run_dir in run_dirs}
        # The run picked on another screen wins once, when it changes; otherwise the selection stays.
        if current is not None and current != self._seen_current and str(current) in names:
            select.value = str(current)
        elif previous is not Select.NULL and previous in names:
            select.value = previous
        elif run_dirs:
            select.value = str(run_dirs[-1])
        self._seen_current = current

    def selected_run(self) -> Path | None:
        """Return the run chosen in the run selector, or None when none is chosen."""
        value = self.query_one("#validate-run", Select).value
        return None if value is Select.NULL else Path(str(value))

    @on(Select.Changed, "#validate-run")
    def _run_changed(self, event: Select.Changed) -> None:
        run_dir = self.selected_run()
        if self.running or run_dir == self.shown_run:
            return
        self._clear_results()
        if run_dir is None:
            return
        if (run_dir / "validation.json").is_file():
            self.query_one("#validate-step", Static).update(f"Reading the validation of {run_dir.name}…")
            self._load_existing(run_dir)
        else:
            self.query_one("#validate-step", Static).update(f"{run_dir.name} is not validated yet: press s to validate it.")

    def _clear_results(self) -> None:
        """Empty the table, the row line and the plot, so that no figure of another run stays on screen."""
        self.report = None
        self.rows = []
        self.row_variables = []
        self.shown_run = None
        fill_table(self.query_one(DataTable), COLUMNS, [])
        self.query_one("#validate-row", Static).update("")
        self.query_one("#validate-plot", PlotView).show_message("The histograms of the variable under the cursor appear here.")

    def action_toggle_plot(self) -> None:
        """Let the plot fill the screen, or give the table its place back."""
        if self.maximized is not None:
            self.minimize()
            self.query_one(DataTable).focus()
        else:
            self.maximize(self.query_one("#validate-plot", PlotView), container=False)
            # The plot takes no focus, and no hidden field may take it, or it would swallow the next key.
            self.set_focus(None)

    def action_start(self) -> None:
        run_dir = self.selected_run()
        if run_dir is None:
            if self.run_count:
                self.notify("No run selected: pick one in the Run list.", severity="warning")
            else:
                self.notify("No run to validate: train one first (screen 3).", severity="warning")
            return
        if self.running:
            self.notify("A validation is already running.", severity="warning")
            return
        text = self.query_one("#validate-events", Input).value.strip()
        try:
            n_events = int(text)
        except ValueError:
            self.notify(f"Events {text!r} is not a whole number; type how many events to generate.", severity="error")
            return
        self.running = True
        self._clear_results()
        self.query_one("#validate-progress", ProgressBar).update(progress=0.0)
        self.query_one("#validate-progress-row").add_class("-running")
        self.query_one("#validate-step", Static).update(f"Validating {run_dir.name} on {n_events:,} events…")
        self._validate(run_dir, n_events)

    @work(thread=True, exclusive=True, group="validate", exit_on_error=False, description="validate a run")
    def _validate(self, run_dir: Path, n_events: int) -> None:
        from cmsgen.engine.errors import CmsgenError
        from cmsgen.engine.validation.report import validate_run

        def progress(fraction: float, step: str) -> None:
            self.post_message(ValidationProgress(fraction, step))

        try:
            report = validate_run(run_dir, n_events=n_events, seed=0, progress=progress)
        except CmsgenError as error:
            log.warning("validation of %s failed: %s", run_dir, error.message, exc_info=True)
            self.post_message(ValidationFailed(run_dir, error.message))
            return
        except (OSError, RuntimeError, ValueError) as error:
            log.exception("validation of %s failed", run_dir)
            self.post_message(ValidationFailed(run_dir, f"{type(error).__name__}: {error}"))
            return
        self.post_message(ValidationDone(run_dir, report.to_dict()))

    @work(thread=True, exclusive=True, group="validate-load", exit_on_error=False, description="read validation.json")
    def _load_existing(self, run_dir: Path) -> None:
        from cmsgen.engine.errors import CmsgenError
        from cmsgen.engine.validation.summary import load_report

        try:
            report = load_report(run_dir)
        except CmsgenError as error:
            log.warning("cannot read the validation of %s: %s", run_dir, error.message)
            return
        self.post_message(ValidationDone(run_dir, report, loaded=True))

    def on_validation_progress(self, message: ValidationProgress) -> None:
        self.query_one("#validate-progress", ProgressBar).update(progress=message.fraction)
        self.query_one("#validate-step", Static).update(message.step)

    def on_validation_failed(self, message: ValidationFailed) -> None:
        self.running = False
        self.query_one("#validate-progress-row").remove_class("-running")
        self.query_one("#validate-step", Static).update(f"[red]Validation failed[/red]: {message.reason}")
        self.app.show_error(f"Validation of {message.run_dir.name} failed", message.reason)  # type: ignore[attr-defined]

    def on_validation_done(self, message: ValidationDone) -> None:
        from cmsgen.engine.validation.summary import summary_rows

        if message.loaded and (self.running or message.run_dir != self.selected_run()):
            return  # a saved report that arrived after the user picked another run or started a validation
        if not message.loaded:
            self.running = False
            self.query_one("#validate-progress-row").remove_class("-running")
            self.query_one("#validate-progress", ProgressBar).update(progress=1.0)
        self.report = message.report
        self.shown_run = message.run_dir
        if self.selected_run() != message.run_dir:
            self.query_one("#validate-run", Select).value = str(message.run_dir)
        self.row_variables = figure_histogram_indices(message.report)
        summary = message.report.get("summary") or {}
        warnings = [w for w in message.report.get("warnings") or [] if isinstance(w, dict)]
        inputs = message.report.get("inputs") or {}
        step = (
            f"{message.run_dir.name}: {VERDICT_MARKS.get(str(summary.get('verdict')), summary.get('verdict'))} · "
            f"{summary.get('pass', 0)} pass, {summary.get('warn', 0)} warn, {summary.get('fail', 0)} fail"
        )
        if warnings:
            step += f" · [yellow]{len(warnings)} warning{'s' if len(warnings) != 1 else ''}[/]"
        requested, sampled = inputs.get("checkpoint_requested"), inputs.get("checkpoint")
        fell_back = bool(requested and sampled and requested != sampled)
        if fell_back:
            step += f" · {escape(str(sampled))} checkpoint"
        self.query_one("#validate-step", Static).update(step)
        for warning in warnings:
            self.notify(str(warning.get("message", "")), title="Validation warning", severity="warning", timeout=10)
        if fell_back:
            self.notify(
                f"{message.run_dir.name} has no {requested} checkpoint, so the {sampled} checkpoint was validated.",
                severity="warning",
                timeout=10,
            )
        table = self.query_one(DataTable)
        self.rows = summary_rows(message.report)
        cells = [
            [VERDICT_MARKS.get(row["verdict"], row["verdict"]), row["variable"], row["figure"], row["value"], row["baseline"]]
            for row in self.rows
        ]
        fill_table(table, COLUMNS, cells, max_widths=MAX_WIDTHS)
        table.focus()
        if table.row_count:
            table.move_cursor(row=0)
            self._show_plot(0)

    @on(DataTable.RowHighlighted, "#validate-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_plot(event.cursor_row)

    def _show_plot(self, row: int) -> None:
        plot = self.query_one("#validate-plot", PlotView)
        if self.report is None:
            return
        if 0 <= row < len(self.rows):
            cells = self.rows[row]
            name = cells.get("description") or cells["variable"]
            line = (
                f"{VERDICT_MARKS.get(cells['verdict'], cells['verdict'])}  {escape(name)} · "
                f"{escape(cells['figure'])}: {escape(cells['value'])}, baseline {escape(cells['baseline'])}"
            )
            if cells.get("note"):
                line += f" · {escape(cells['note'])}"
            self.query_one("#validate-row", Static).update(line)
        index = self.row_variables[row] if 0 <= row < len(self.row_variables) else None
        if index is None:
            plot.show_message("This figure has no histogram: move the cursor to a feature or observable.")
            return
        variable = self.report["univariate"][index]
        from cmsgen.engine.validation.histograms import histogram_comparison_from_dict

        comparison = histogram_comparison_from_dict(variable["histogram"])
        colorless = self.app.no_color
        plot.renderer = lambda width, height: plots.render_comparison(comparison, width, height, colorless=colorless)
