"""The Files screen: the structure of every dataset, the details of the selected node and a branch histogram.

The structure comes from ``cmsgen.engine.sources.inspect.inspect_path`` in a
thread worker. Histograms are read and filled in another exclusive thread
worker and cached by (file, tree, branch, maximum entries). The plot is drawn
again for each size of the plot area.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, Tree

from cmsgen.tui.widgets.dataset_tree import DatasetTree, NodeInfo, format_bytes
from cmsgen.tui import plots
from cmsgen.tui.widgets.plot_view import PlotView

log = logging.getLogger(__name__)

# Entries read for a branch histogram: enough for a stable shape, small enough to stay interactive.
HISTOGRAM_MAX_ENTRIES = 100_000
HISTOGRAM_BINS = 50

# (file, object path, branch, maximum entries read).
HistogramKey = tuple[str, str, str, int]


class StructureLoaded(Message):
    """Result of inspecting the dataset paths: the structures found and the errors of the paths that failed."""

    def __init__(self, datasets: list[tuple[Path, list[dict[str, Any]]]], errors: list[str]) -> None:
        super().__init__()
        self.datasets = datasets
        self.errors = errors


class HistogramReady(Message):
    def __init__(self, key: HistogramKey, histogram: Any) -> None:
        super().__init__()
        self.key = key
        self.histogram = histogram


class HistogramFailed(Message):
    def __init__(self, key: HistogramKey, reason: str) -> None:
        super().__init__()
        self.key = key
        self.reason = reason


def describe_node(info: NodeInfo) -> str:
    """Return the details text of one tree node (Rich markup)."""
    details = info.details
    if info.kind == "dataset":
        return f"[b]Dataset[/b] {info.file}"
    if info.kind == "file":
        lines = [
            f"[b]File[/b] {details.get('path')}",
            f"format {details.get('format')}, {format_bytes(details.get('size_bytes'))}, "
            f"{len(details.get('objects') or [])} object(s)",
        ]
        if details.get("error"):
            lines.append(f"[red]Unreadable:[/red] {details['error']}")
        return "\n".join(lines)
    if info.kind == "object":
        return (
            f"[b]{details.get('kind', 'object')}[/b] {details.get('path')} in {info.file.name if info.file else '?'}\n"
            f"{details.get('entries', '?')} entries, {len(details.get('branches') or [])} branches"
        )
    if info.kind == "branch":
        lines = [
            f"[b]Branch[/b] {details.get('name')}  type {details.get('type', '?')}",
            f"compressed {format_bytes(details.get('compressed_bytes'))}, "
            f"uncompressed {format_bytes(details.get('uncompressed_bytes'))}, "
            f"compression {details.get('compression') or '-'}",
        ]
        if details.get("readable") is False:
            lines.append(f"[red]Cannot be read:[/red] {details.get('reason') or 'no reason given'}")
        return "\n".join(lines)
    return ""


class FilesScreen(Screen[None]):
    """Browse datasets down to branches and see a histogram of the branch under the cursor."""

    TITLE = "Files"
    CSS_PATH = "files.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_tree", "Tree", show=False),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.histograms: dict[HistogramKey, Any] = {}
        self.failed_histograms: dict[HistogramKey, str] = {}
        self.selected_key: HistogramKey | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="files-left"):
                yield Input(placeholder="filter branches (/)", id="files-filter", compact=True)
                yield DatasetTree(id="files-tree")
            with Vertical(id="files-right"):
                yield Static("Reading the file structure…", id="files-details")
                yield PlotView("Select a branch to see its histogram.", id="files-plot")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.loaded = False
        self.query_one("#files-details", Static).update("Reading the file structure…")
        self._inspect(list(self.app.dataset_paths))  # type: ignore[attr-defined]

    def action_focus_filter(self) -> None:
        self.query_one("#files-filter", Input).focus()

    def action_focus_tree(self) -> None:
        self.query_one(DatasetTree).focus()

    @work(thread=True, exclusive=True, group="files-inspect", exit_on_error=False, description="inspect files")
    def _inspect(self, paths: list[Path]) -> None:
        from cmsgen.engine.errors import CmsgenError
        from cmsgen.engine.sources.inspect import inspect_path

        datasets: list[tuple[Path, list[dict[str, Any]]]] = []
        errors: list[str] = []
        for path in paths:
            try:
                structures = [structure.to_dict() for structure in inspect_path(path)]
            except CmsgenError as error:
                log.warning("inspecting %s failed: %s", path, error.message, exc_info=True)
                errors.append(error.message)
                continue
            datasets.append((Path(path), structures))
        self.post_message(StructureLoaded(datasets, errors))

    def on_structure_loaded(self, message: StructureLoaded) -> None:
        tree = self.query_one(DatasetTree)
        tree.set_datasets(message.datasets, self.query_one("#files-filter", Input).value)
        self.loaded = True
        n_files = sum(len(files) for _, files in message.datasets)
        self.query_one("#files-details", Static).update(
            f"{n_files} file(s) in {len(message.datasets)} dataset(s). j/k move, l/h open and close, / filters."
        )
        for error in message.errors:
            self.notify(error, title="Cannot inspect", severity="error", timeout=10)
        tree.focus()

    @on(Input.Changed, "#files-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        shown = self.query_one(DatasetTree).apply_filter(event.value)
        if event.value:
            self.query_one("#files-details", Static).update(f"{shown} branch(es) match {event.value!r}.")

    @on(Input.Submitted, "#files-filter")
    def _filter_submitted(self) -> None:
        self.action_focus_tree()

    @on(Tree.NodeHighlighted)
    def _node_highlighted(self, event: Tree.NodeHighlighted[NodeInfo]) -> None:
        info = event.node.data
        if info is None:
            return
        self.query_one("#files-details", Static).update(describe_node(info))
        plot = self.query_one("#files-plot", PlotView)
        if info.kind != "branch":
            plot.show_message("Select a branch to see its histogram.")
            return
        if info.details.get("readable") is False:
            plot.show_message(f"{info.branch} cannot be read: {info.details.get('reason') or 'no reason given'}")
            return
        base_key = info.histogram_key
        if base_key is None:
            plot.show_message(f"{info.branch} has sub-branches: select one of them.")
            return
        key: HistogramKey = (*base_key, HISTOGRAM_MAX_ENTRIES)
        self.selected_key = key
        if key in self.histograms:
            self._show_histogram(key)
        elif key in self.failed_histograms:
            plot.show_message(self.failed_histograms[key])
        else:
            plot.show_message(f"Building the histogram of {info.branch}…")
            self._build_histogram(key)

    @work(thread=True, exclusive=True, group="files-histogram", exit_on_error=False, description="fill a branch histogram")
    def _build_histogram(self, key: HistogramKey) -> None:
        from cmsgen.engine.errors import CmsgenError
        from cmsgen.engine.sources.inspect import read_branch_values
        from cmsgen.engine.validation.histograms import histogram_1d

        file, object_path, branch, max_entries = key
        try:
            values = read_branch_values(Path(file), object_path, branch, max_entries)
            histogram = histogram_1d(values, bins=HISTOGRAM_BINS)
        except CmsgenError as error:
            log.warning("histogram of %s:%s/%s failed: %s", file, object_path, branch, error.message, exc_info=True)
            self.post_message(HistogramFailed(key, f"{branch} cannot be read: {error.message}"))
            return
        except (ValueError, TypeError) as error:
            log.warning("histogram of %s:%s/%s failed", file, object_path, branch, exc_info=True)
            self.post_message(HistogramFailed(key, f"{branch} cannot be histogrammed: {error}"))
            return
        self.post_message(HistogramReady(key, histogram))

    def on_histogram_ready(self, message: HistogramReady) -> None:
        self.histograms[message.key] = message.histogram
        if message.key == self.selected_key:
            self._show_histogram(message.key)

    def on_histogram_failed(self, message: HistogramFailed) -> None:
        self.failed_histograms[message.key] = message.reason
        if message.key == self.selected_key:
            self.query_one("#files-plot", PlotView).show_message(message.reason)

    def _show_histogram(self, key: HistogramKey) -> None:
        histogram = self.histograms[key]
        plot = self.query_one("#files-plot", PlotView)
        if histogram.total == 0:
            plot.show_message(f"{key[2]} has no finite values in the first {key[3]:,} entries.")
            return
        title = f"{key[2]} ({histogram.total:,} values"
        if histogram.n_nonfinite:
            title += f", {histogram.n_nonfinite:,} NaN/inf"
        title += ")"
        plot.renderer = lambda width, height: plots.render_histogram(histogram, width, height, title)
