"""The Report screen: the missing-field report of the dataset as tables, exported on a key.

The report is built by ``cmsgen.engine.report.build_report`` in a thread worker.
Its ``to_dict()`` form fills one DataTable per section; ``e`` writes the
Markdown and JSON versions to a path the user confirms.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from cmsgen.tui.widgets.tables import fill_table

log = logging.getLogger(__name__)

# Section of the report dictionary -> (tab title, columns). Each column is a key of the rows.
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "verdict": ("Verdict", ("feature_set", "trainable", "n_events", "reason")),
    "fields": ("Fields", ("collection", "field", "status", "source", "derivation")),
    "quality": ("Quality", ("collection", "field", "n", "null", "nan", "inf", "sentinel", "out_of_range", "rule")),
    "unreadable": ("Unreadable", ("file", "branch", "reason", "route")),
    "drift": ("Drift", ("file", "missing", "extra", "type_changes")),
    "files": ("Files", ("path", "format", "layout", "trees", "entries", "readable", "error")),
}

STATUS_STYLES = {"present": "green", "derived": "yellow", "missing": "bold red"}


class ReportBuilt(Message):
    def __init__(self, report: dict[str, Any], markdown: str) -> None:
        super().__init__()
        self.report = report
        self.markdown = markdown


class ReportFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def format_cell(column: str, value: Any) -> str:
    """Format one report value for a table cell (lists joined, booleans as yes/no, styles by status)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "[red]no[/red]"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items()) or "-"
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value)
    if column == "status" and text in STATUS_STYLES:
        return f"[{STATUS_STYLES[text]}]{text}[/]"
    return text.replace("[", r"\[")


def section_rows(report: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """Return the rows of one report section. The ``files`` rows are stored under ``dataset``."""
    if section == "files":
        return list((report.get("dataset") or {}).get("files") or [])
    rows = report.get(section) or []
    return list(rows) if isinstance(rows, list) else []


def summary_text(report: dict[str, Any]) -> str:
    """Return the one-line summary above the tables (Rich markup)."""
    layout = report.get("layout") or {}
    duplicates = (report.get("duplicates") or {}).get("n_duplicates", 0)
    missing = sum(1 for row in report.get("fields") or [] if row.get("status") == "missing")
    trainable = [row.get("feature_set") for row in report.get("verdict") or [] if row.get("trainable")]
    return (
        f"{report.get('n_events', 0):,} events · layout [b]{layout.get('name', '?')}[/b] ({layout.get('reason', '')}) · "
        f"{missing} missing field(s) · {duplicates} duplicate event(s) · trainable: {', '.join(map(str, trainable)) or 'none'}"
    )


def write_exports(base: Path, report: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``base``.md and ``base``.json, creating the parent folder, and return both paths."""
    base.parent.mkdir(parents=True, exist_ok=True)
    markdown_path = base.with_name(base.name + ".md")
    json_path = base.with_name(base.name + ".json")
    markdown_path.write_text(markdown, encoding="utf-8")
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return markdown_path, json_path


class ExportScreen(ModalScreen[Path | None]):
    """Modal that prompts for the path, without extension, of the exported Markdown and JSON files."""

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 70; max-width: 95%; height: auto; border: thick $primary; background: $surface; padding: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: Path) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Export the report as Markdown and JSON. Path without extension (Enter writes, Escape cancels):")
            yield Input(str(self.default), id="export-path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(Path(value).expanduser() if value else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReportScreen(Screen[None]):
    """The missing-field report of the current dataset."""

    TITLE = "Report"
    CSS_PATH = "report.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "export", "Export"),
        Binding("ctrl+r", "rebuild", "Rebuild"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] | None = None
        self.markdown = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Building the missing-field report…", id="report-summary")
        with TabbedContent(id="report-tabs"):
            for section, (title, columns) in SECTIONS.items():
                with TabPane(title, id=f"tab-{section}"):
                    table: DataTable[str] = DataTable(id=f"table-{section}", zebra_stripes=True, cursor_type="row")
                    yield table
        yield Footer()

    def on_mount(self) -> None:
        for section, (_, columns) in SECTIONS.items():
            fill_table(self.query_one(f"#table-{section}", DataTable), columns, [])
        self.action_rebuild()

    def action_rebuild(self) -> None:
        self.query_one("#report-summary", Static).update("Building the missing-field report…")
        self._build(list(self.app.dataset_paths))  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="report-build", exit_on_error=False, description="build the report")
    def _build(self, paths: list[Path]) -> None:
        from cmsgen.engine.errors import CmsgenError
        from cmsgen.engine.report import build_report, render_markdown

        try:
            report = build_report([str(path) for path in paths])
            self.post_message(ReportBuilt(report.to_dict(), render_markdown(report)))
        except CmsgenError as error:
            log.warning("building the report of %s failed: %s", paths, error.message, exc_info=True)
            self.post_message(ReportFailed(error.message))

    def on_report_built(self, message: ReportBuilt) -> None:
        self.report = message.report
        self.markdown = message.markdown
        self.query_one("#report-summary", Static).update(summary_text(message.report))
        for section, (title, columns) in SECTIONS.items():
            rows = section_rows(message.report, section)
            cells = [[format_cell(column, row.get(column)) for column in columns] for row in rows]
            fill_table(self.query_one(f"#table-{section}", DataTable), columns, cells)
            self.query_one("#report-tabs", TabbedContent).get_tab(f"tab-{section}").label = f"{title} {len(rows)}"

    def on_report_failed(self, message: ReportFailed) -> None:
        self.query_one("#report-summary", Static).update(f"[red]No report:[/red] {message.reason}")
        self.app.show_error("The report could not be built", message.reason)  # type: ignore[attr-defined]

    def default_export_base(self) -> Path:
        runs_dir: Path = self.app.runs_dir  # type: ignore[attr-defined]
        return runs_dir.resolve().parent / "cmsgen-report"

    def action_export(self) -> None:
        if self.report is None:
            self.notify("The report is still being built. Press e again when it is ready.", severity="warning")
            return
        self.app.push_screen(ExportScreen(self.default_export_base()), self._export_to)

    def _export_to(self, base: Path | None) -> None:
        if base is None or self.report is None:
            return
        try:
            markdown_path, json_path = write_exports(base, self.report, self.markdown)
        except OSError as error:
            log.warning("exporting the report to %s failed", base, exc_info=True)
            self.app.show_error("Export failed", f"Cannot write {base}.md/.json: {error.strerror}. Choose another path.")  # type: ignore[attr-defined]
            return
        log.info("report exported to %s and %s", markdown_path, json_path)
        self.notify(f"Wrote {markdown_path} and {json_path.name}", title="Report exported", timeout=8)
