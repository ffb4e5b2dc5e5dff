"""The Report screen: the missing-field report of the selected dataset as tables, exported on a key.

The report is built by ``cmsgen.engine.report.build_report`` in a thread worker,
on the paths that ``app.report_paths()`` returns: the dataset selected on the
Files screen, else every path the app was started with. Its ``to_dict()`` form
fills one DataTable per section, with long columns capped so that every column
starts on an 80-column screen. The line under the table shows the full text of
the cut cells of the row under the cursor, and Enter shows the whole row. ``e``
writes the Markdown and JSON versions to a path the user confirms.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from cmsgen.tui.widgets.tables import KeyTable, fill_table

log = logging.getLogger(__name__)

# Section of the report dictionary -> (tab title, columns). Each column is a key of the rows.
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "verdict": ("Verdict", ("feature_set", "trainable", "n_events", "reason")),
    "fields": ("Fields", ("collection", "field", "status", "source", "derivation")),
    "quality": ("Quality", ("collection", "field", "n", "null", "nan", "inf", "sentinel", "out_of_range", "rule")),
    "unreadable": ("Unreadable", ("file", "branch", "reason", "route")),
    "drift": ("Drift", ("file", "missing", "extra", "type_changes")),
    "files": ("Files", ("path", "format", "layout", "trees", "entries", "readable", "error")),
    "notes": ("Notes", ("note",)),
}

# Maximum width in cells of the long text columns on an 80-column screen, chosen so that
# every column of a section starts within 78 cells (80 less the table's scroll bar).
# Wider screens scale them up. Longer cells end with an ellipsis, and the details line
# under the table shows them in full.
COLUMN_CAPS: dict[str, dict[str, int]] = {
    "verdict": {"feature_set": 27, "reason": 26},
    "fields": {"collection": 10, "source": 18, "derivation": 24},
    "quality": {"collection": 9, "rule": 10},
    "unreadable": {"file": 14, "branch": 20, "reason": 24, "route": 10},
    "drift": {"file": 16, "missing": 18, "extra": 18, "type_changes": 14},
    "files": {"path": 12, "layout": 10, "trees": 12, "error": 8},
    "notes": {"note": 76},
}

# Keys of a row that are not columns but are shown in the details line.
DETAIL_KEYS: dict[str, tuple[str, ...]] = {
    "fields": ("files_differing",),
    "drift": ("reference",),
    "files": ("layout_reason", "main_tree"),
}

# Columns holding a file path: the table shows the file name, the details line the whole path.
PATH_COLUMNS = frozenset({"file", "path"})

# Text shown under an empty table, per section.
EMPTY_TEXT = {
    "verdict": "No feature set was judged.",
    "fields": "No layout matches the branch names, so the report has no canonical fields.",
    "quality": "No canonical field was read.",
    "unreadable": "Every file and branch of the dataset can be read.",
    "drift": "No drift: the files of each layout have the branches and types of its first file.",
    "files": "The dataset has no files.",
    "notes": "No notes.",
}
NO_EVENTS_TEXT = "No events were read, so no values were counted; the Unreadable and Notes tabs say why."

STATUS_STYLES = {"present": "green", "derived": "yellow", "missing": "bold red"}


class ReportBuilt(Message):
    def __init__(self, paths: list[Path], report: dict[str, Any], markdown: str) -> None:
        super().__init__()
        self.paths = paths
        self.report = report
        self.markdown = markdown


class ReportFailed(Message):
    def __init__(self, paths: list[Path], reason: str) -> None:
        super().__init__()
        self.paths = paths
        self.reason = reason


def plain_text(column: str, value: Any) -> str:
    """Format one report value in full, as plain text, for the details line and the row modal."""
    if value is None:
        return "(whole file)" if column == "branch" else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column == "trees" and isinstance(value, list):
        return ", ".join(describe_tree(tree) for tree in value) or "-"
    if column == "type_changes" and isinstance(value, list):
        return ", ".join(f"{change['branch']} ({change['reference']} → {change['file']})" for change in value) or "-"
    if column == "files_differing" and isinstance(value, list):
        return ", ".join(f"{item['file']} ({item['status']})" for item in value) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items()) or "-"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value) or "-"


def describe_tree(tree: dict[str, Any]) -> str:
    """Return a tree of the ``files`` section as ``MetaData (tree, 1 entry)``."""
    entries = int(tree.get("entries") or 0)
    return f"{tree.get('path')} ({tree.get('kind')}, {entries:,} {'entry' if entries == 1 else 'entries'})"


def format_cell(column: str, value: Any) -> str:
    """Format one report value for a table cell as Rich markup: file names for paths, booleans as yes/no, statuses in colour."""
    if value is None:
        return escape(plain_text(column, value))
    if isinstance(value, bool):
        return "yes" if value else "[red]no[/red]"
    if column in PATH_COLUMNS and isinstance(value, str):
        return escape(Path(value).name)
    text = plain_text(column, value)
    if column == "status" and text in STATUS_STYLES:
        return f"[{STATUS_STYLES[text]}]{text}[/]"
    return escape(text)


def section_rows(report: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """Return the rows of one report section. The ``files`` rows are stored under ``dataset``, the notes as strings."""
    if section == "files":
        return list((report.get("dataset") or {}).get("files") or [])
    if section == "notes":
        return [{"note": note} for note in report.get("notes") or []]
    rows = report.get(section) or []
    return list(rows) if isinstance(rows, list) else []


def row_details(section: str, row: dict[str, Any], caps: dict[str, int]) -> list[tuple[str, str]]:
    """Return (label, full text) of the columns of ``row`` that the table cuts to ``caps`` or shortens, and of its extra keys."""
    details = []
    for column in SECTIONS[section][1]:
        full = plain_text(column, row.get(column))
        displayed = Text.from_markup(format_cell(column, row.get(column))).plain
        if full != displayed or Text(full).cell_len > caps.get(column, Text(full).cell_len):
            details.append((column, full))
    for key in DETAIL_KEYS.get(section, ()):
        if row.get(key):
            details.append((key, plain_text(key, row[key])))
    return details


def shorten_paths(paths: Sequence[Path | str], width: int) -> str:
    """Return the paths as one line of at most about ``width`` characters: their common folder, then names and a count of the rest."""
    texts = [str(path) for path in paths]
    if len(texts) == 1:
        return keep_tail(texts[0], width)
    try:
        parent = os.path.commonpath(texts)
    except ValueError:
        parent = ""
    names = [os.path.relpath(text, parent) for text in texts] if parent else texts
    prefix = f"{keep_tail(parent, max(width // 2, 10))}: " if parent else ""
    shown: list[str] = []
    for name in names:
        rest = len(names) - len(shown) - 1
        candidate = prefix + ", ".join([*shown, name]) + (f" and {rest} more" if rest else "")
        if shown and len(candidate) > width:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return prefix + ", ".join(shown) + (f" and {rest} more" if rest else "")


def keep_tail(text: str, width: int) -> str:
    """Return ``text``, or its last ``width`` - 1 characters after an ellipsis when it is longer than ``width``."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def summary_text(report: dict[str, Any], paths: Sequence[Path | str], width: int = 80) -> str:
    """Return the three summary lines above the tables (Rich markup) for a screen ``width`` columns wide.

    The first line names the paths the report covers, shortened to fit. The other
    lines are short enough for 80 columns except for very long lists of trainable
    feature sets, which the CSS ends with an ellipsis.
    """
    layout = report.get("layout") or {}
    duplicates = (report.get("duplicates") or {}).get("n_duplicates", 0)
    missing = sum(1 for row in report.get("fields") or [] if row.get("status") == "missing")
    trainable = [str(row.get("feature_set")) for row in report.get("verdict") or [] if row.get("trainable")]
    files = (report.get("dataset") or {}).get("files") or []
    read = sum(1 for f in files if f.get("readable") and f.get("layout") and f.get("layout") == layout.get("name"))
    # Files of another layout, or unreadable ones, are not read, and the count shows it before the Notes tab does.
    source = f" from {read} of {len(files)} files" if read < len(files) else ""
    duplicates_text = f"{duplicates:,} duplicate {plural(duplicates, 'event')} · " if duplicates else ""
    prefix = "Report of "
    return "\n".join(
        [
            prefix + escape(shorten_paths(paths, max(width - 2 - len(prefix), 20))),
            (
                f"{report.get('n_events', 0):,} events{source} · layout [b]{escape(str(layout.get('name') or 'none'))}[/b] · "
                f"{missing} missing {plural(missing, 'field')}"
            ),
            f"{duplicates_text}trainable: {escape(', '.join(trainable)) or 'none'}",
        ]
    )


def plural(count: int, noun: str) -> str:
    return noun if count == 1 else noun + "s"


def export_paths(base: Path) -> tuple[Path, Path]:
    """Return the Markdown and JSON paths of the export ``base``."""
    return base.with_name(base.name + ".md"), base.with_name(base.name + ".json")


def free_export_base(base: Path) -> Path:
    """Return ``base``, or ``base``-2, -3 and so on, the first whose Markdown and JSON files both do not exist."""
    candidate = base
    number = 1
    while any(path.exists() for path in export_paths(candidate)):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def write_exports(base: Path, report: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``base``.md and ``base``.json, creating the parent folder, and return both paths."""
    base.parent.mkdir(parents=True, exist_ok=True)
    markdown_path, json_path = export_paths(base)
    markdown_path.write_text(markdown, encoding="utf-8")
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return markdown_path, json_path


class ExportScreen(ModalScreen[Path | None]):
    """Modal that prompts for the path, without extension, of the exported Markdown and JSON files.

    When either file exists, the first Enter only warns: a second Enter on the same
    path overwrites, and ctrl+n replaces the path with the first free one.
    """

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 70; max-width: 95%; height: auto; border: thick $primary; background: $surface; padding: 1; }
    ExportScreen #export-warning { color: $warning; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+n", "free_name", "Free name"),
    ]

    def __init__(self, default: Path) -> None:
        super().__init__()
        self.default = default
        # The path whose existing files the user was warned about; a second Enter on it overwrites them.
        self.warned_base: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Export the report as Markdown and JSON. Path without extension (Enter writes, Escape cancels):")
            yield Input(str(self.default), id="export-path")
            yield Static("", id="export-warning")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.warned_base = None
        self.query_one("#export-warning", Static).update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            self.dismiss(None)
            return
        base = Path(value).expanduser()
        existing = [path.name for path in export_paths(base) if path.exists()]
        if existing and base != self.warned_base:
            self.warned_base = base
            self.query_one("#export-warning", Static).update(
                f"{escape(' and '.join(existing))} already exist{'s' if len(existing) == 1 else ''} in {escape(str(base.parent))}. "
                f"Press Enter again to overwrite, ctrl+n to use the free name {escape(free_export_base(base).name)}, "
                "or edit the path."
            )
            return
        self.dismiss(base)

    def action_free_name(self) -> None:
        field = self.query_one("#export-path", Input)
        value = field.value.strip()
        base = Path(value).expanduser() if value else self.default
        field.value = str(free_export_base(base))
        field.cursor_position = len(field.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RowScreen(ModalScreen[None]):
    """Modal that shows every column of one report row in full."""

    DEFAULT_CSS = """
    RowScreen { align: center middle; }
    RowScreen > VerticalScroll { width: 90%; height: auto; max-height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close"),
    ]

    def __init__(self, title: str, items: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.items = items

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = self.title_text
            scroll.border_subtitle = "Enter or Escape closes"
            yield Static("\n".join(f"[b]{escape(label)}[/b]: {escape(text)}" for label, text in self.items), id="row-text")

    def action_close(self) -> None:
        self.dismiss(None)


class ReportScreen(Screen[None]):
    """The missing-field report of the selected dataset."""

    TITLE = "Report"
    CSS_PATH = "report.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "export", "Export"),
        Binding("ctrl+r", "rebuild", "Rebuild"),
        Binding("enter", "show_row", "Whole row"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] | None = None
        # The reason the latest build failed, or None while a build runs or after one succeeded.
        self.build_error: str | None = None
        self.markdown = ""
        # The paths of the report on screen or being built; None before the first build.
        self.report_paths: list[Path] | None = None
        self.rows: dict[str, list[dict[str, Any]]] = {section: [] for section in SECTIONS}
        # The screen width that the column caps of the filled tables were scaled to.
        self.caps_width = 80

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Building the missing-field report…", id="report-summary")
        with TabbedContent(id="report-tabs"):
            for section, (title, _columns) in SECTIONS.items():
                with TabPane(title, id=f"tab-{section}"):
                    table: DataTable[str] = KeyTable(id=f"table-{section}", zebra_stripes=True, cursor_type="row")
                    yield table
        yield Static("", id="report-details")
        yield Footer()

    def on_mount(self) -> None:
        self.action_rebuild()

    def on_screen_resume(self) -> None:
        """Rebuild the report when the dataset selected on the Files screen changed while another screen was shown."""
        if self.report_paths is not None and self.app.report_paths() != self.report_paths:  # type: ignore[attr-defined]
            self.action_rebuild()

    def action_rebuild(self) -> None:
        paths: list[Path] = self.app.report_paths()  # type: ignore[attr-defined]
        self.report_paths = paths
        self.report = None
        self.build_error = None
        self.markdown = ""
        self.show_rows({section: [] for section in SECTIONS})
        self.query_one("#report-summary", Static).update(
            f"Building the missing-field report of {escape(shorten_paths(paths, max(self.app.size.width - 40, 20)))}…"
        )
        self._build(paths)

    @work(thread=True, exclusive=True, group="report-build", exit_on_error=False, description="build the report")
    def _build(self, paths: list[Path]) -> None:
        from cmsgen.engine.errors import CmsgenError
        from cmsgen.engine.report import build_report, render_markdown

        try:
            report = build_report([str(path) for path in paths])
            message: Message = ReportBuilt(paths, report.to_dict(), render_markdown(report))
        except CmsgenError as error:
            log.warning("building the report of %s failed: %s", paths, error.message, exc_info=True)
            message = ReportFailed(paths, error.message)
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_report_built(self, message: ReportBuilt) -> None:
        if message.paths != self.report_paths:
            return  # a build for a dataset that is no longer selected
        self.report = message.report
        self.markdown = message.markdown
        self.query_one("#report-summary", Static).update(summary_text(message.report, message.paths, self.app.size.width))
        self.show_rows({section: section_rows(message.report, section) for section in SECTIONS})

    def on_report_failed(self, message: ReportFailed) -> None:
        if message.paths != self.report_paths:
            return
        self.build_error = message.reason
        self.query_one("#report-summary", Static).update(f"[red]No report:[/red] {escape(message.reason)}")
        self.app.show_error("The report could not be built", message.reason)  # type: ignore[attr-defined]

    def show_rows(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Fill every table and tab title with ``rows``, by section, and update the details line."""
        self.rows = rows
        self.fill_tables()
        tabs = self.query_one("#report-tabs", TabbedContent)
        for section, (title, _columns) in SECTIONS.items():
            tabs.get_tab(f"tab-{section}").label = f"{title} {len(rows[section])}" if self.report is not None else title
        self.update_details()

    def fill_tables(self) -> None:
        """Fill the tables from ``self.rows``, with the column caps scaled to the screen width, keeping each cursor row."""
        width = max(self.app.size.width, 80)
        self.caps_width = width
        for section, (_title, columns) in SECTIONS.items():
            table = self.query_one(f"#table-{section}", DataTable)
            cursor = table.cursor_row
            caps = self.scaled_caps(section)
            cells = [[format_cell(column, row.get(column)) for column in columns] for row in self.rows[section]]
            fill_table(table, columns, cells, max_widths=caps)
            if 0 < cursor < table.row_count:
                table.move_cursor(row=cursor)

    def scaled_caps(self, section: str) -> dict[str, int]:
        """Return the column caps of ``section`` scaled to the screen width that the tables were filled for."""
        return {column: cap * self.caps_width // 80 for column, cap in COLUMN_CAPS.get(section, {}).items()}

    def on_resize(self) -> None:
        if self.report is None or self.report_paths is None:
            return
        self.query_one("#report-summary", Static).update(summary_text(self.report, self.report_paths, self.app.size.width))
        if max(self.app.size.width, 80) != self.caps_width:
            self.fill_tables()
            self.update_details()

    def active_section(self) -> str:
        return (self.query_one("#report-tabs", TabbedContent).active or "tab-verdict").removeprefix("tab-")

    def current_row(self) -> tuple[str, int, dict[str, Any]] | None:
        """Return the section, index and row under the cursor of the shown table, or None when it is empty."""
        section = self.active_section()
        rows = self.rows.get(section) or []
        if not rows:
            return None
        index = self.query_one(f"#table-{section}", DataTable).cursor_row
        return (section, index, rows[index]) if 0 <= index < len(rows) else None

    def update_details(self) -> None:
        """Show the full text of the cut columns of the row under the cursor, or what an empty table means."""
        details = self.query_one("#report-details", Static)
        if self.report is None:
            details.update("")
            return
        current = self.current_row()
        if current is None:
            section = self.active_section()
            no_events = section == "quality" and self.report.get("n_events", 0) == 0
            details.update(NO_EVENTS_TEXT if no_events else EMPTY_TEXT.get(section, ""))
            return
        section, index, row = current
        parts = [f"[b]{escape(label)}[/b]: {escape(text)}" for label, text in row_details(section, row, self.scaled_caps(section))]
        position = f"[dim]{index + 1}/{len(self.rows[section])}[/dim]"
        details.update(" · ".join([position, *parts]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.update_details()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.update_details()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_show_row()

    def action_show_row(self) -> None:
        current = self.current_row()
        if current is None:
            return
        section, index, row = current
        columns = SECTIONS[section][1]
        items = [(column, plain_text(column, row.get(column))) for column in columns]
        items += [(key, plain_text(key, row[key])) for key in DETAIL_KEYS.get(section, ()) if row.get(key)]
        self.app.push_screen(RowScreen(f"{SECTIONS[section][0]} row {index + 1}", items))

    def default_export_base(self) -> Path:
        runs_dir: Path = self.app.runs_dir  # type: ignore[attr-defined]
        return runs_dir.resolve().parent / "cmsgen-report"

    def action_export(self) -> None:
        if self.report is None and self.build_error is not None:
            self.notify(f"There is no report to export: {self.build_error}", severity="error", timeout=8)
            return
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
