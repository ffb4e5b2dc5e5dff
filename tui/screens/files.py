"""The Files screen: the structure of every dataset, the details of the selected node and a branch histogram.

The structure comes from ``cmsgen.engine.sources.inspect.inspect_file`` in a
thread worker, one file at a time, so files appear in the tree as they are read.
Histograms are read and filled in another exclusive thread worker and cached by
(file, tree, branch, maximum entries). The plot is drawn again for each size of
the plot area. Moving the cursor selects the dataset or file under it for the
Report screen (``CmsgenApp.select_dataset``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, Tree
from textual.worker import get_current_worker

from cmsgen.tui import plots
from cmsgen.tui.widgets.dataset_tree import DatasetTree, NodeInfo, format_bytes, plural
from cmsgen.tui.widgets.plot_view import PlotView

log = logging.getLogger(__name__)

# Entries read for a branch histogram: enough for a stable shape, small enough to stay interactive.
HISTOGRAM_MAX_ENTRIES = 100_000
HISTOGRAM_BINS = 50

# (file, object path, branch, maximum entries read).
HistogramKey = tuple[str, str, str, int]


class DatasetListed(Message):
    """The files of dataset ``index`` are listed: ``n_files`` of them, or none and an ``error``."""

    def __init__(self, generation: int, index: int, n_files: int, error: str | None = None) -> None:
        super().__init__()
        self.generation = generation
        self.index = index
        self.n_files = n_files
        self.error = error


class FileStarted(Message):
    """The worker starts to inspect file ``position`` (from 1) of ``total``."""

    def __init__(self, generation: int, path: Path, position: int, total: int) -> None:
        super().__init__()
        self.generation = generation
        self.path = path
        self.position = position
        self.total = total


class FileInspected(Message):
    """Structure (``FileStructure.to_dict()``) of one file of dataset ``index``."""

    def __init__(self, generation: int, index: int, structure: dict[str, Any]) -> None:
        super().__init__()
        self.generation = generation
        self.index = index
        self.structure = structure


class StructureLoaded(Message):
    """Every file of every dataset is inspected."""

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


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


TREE_KEYS_HINT = "j/k move, l/h open and close, / filters."
TABLE_SUFFIXES = (".csv", ".parquet")


def describe_node(info: NodeInfo) -> str:
    """Return the details text of one tree node (Rich markup)."""
    details = info.details
    if info.kind == "dataset":
        if details.get("error"):
            return f"[b]Dataset[/b] {escape(str(info.file))}\n[red]Unreadable:[/red] {escape(details['error'])}"
        return f"[b]Dataset[/b] {escape(str(info.file))}\n{TREE_KEYS_HINT}"
    if info.kind == "file":
        return _describe_file(details)
    if info.kind == "object":
        return _describe_object(info)
    if info.kind == "branch":
        return _describe_branch(info)
    return ""


def _describe_file(details: dict[str, Any]) -> str:
    lines = [f"[b]File[/b] {escape(str(details.get('path')))}"]
    if details.get("error"):
        lines.append(f"format {details.get('format')}, {format_bytes(details.get('size_bytes'))}")
        lines.append(f"[red]Unreadable:[/red] {escape(details['error'])}")
    else:
        n_objects = len(details.get("objects") or [])
        lines.append(f"format {details.get('format')}, {format_bytes(details.get('size_bytes'))}, {plural(n_objects, 'object')}")
    return "\n".join(lines)


def _describe_object(info: NodeInfo) -> str:
    details = info.details
    kind = details.get("kind", "object")
    file_name = info.file.name if info.file else "?"
    entries = details.get("entries")
    n_branches = len(details.get("branches") or [])
    if kind == "table":
        size = f"{plural(entries, 'row')}, " if isinstance(entries, int) else ""
        lines = [f"[b]Table[/b] {escape(file_name)}", f"{size}{plural(n_branches, 'column')}"]
    else:
        size = f"{plural(entries, 'entry')}, " if isinstance(entries, int) else ""
        lines = [f"[b]{kind}[/b] {escape(str(details.get('path')))} in {escape(file_name)}", f"{size}{plural(n_branches, 'branch')}"]
    lines.extend(f"note: {escape(str(note))}" for note in details.get("notes") or [])
    return "\n".join(lines)


def _describe_branch(info: NodeInfo) -> str:
    details = info.details
    is_column = info.file is not None and info.file.suffix.lower() in TABLE_SUFFIXES
    kind = "Column" if is_column else "Branch"
    type_text = f"  type {escape(str(details['type']))}" if details.get("type") else ""
    lines = [f"[b]{kind}[/b] {escape(str(details.get('name')))}{type_text}"]
    # CSV columns have no sizes or compression, so the line is left out where none of them is known.
    sizes = []
    if details.get("compressed_bytes") is not None:
        sizes.append(f"compressed {format_bytes(details['compressed_bytes'])}")
    if details.get("uncompressed_bytes") is not None:
        sizes.append(f"uncompressed {format_bytes(details['uncompressed_bytes'])}")
    if details.get("compression"):
        sizes.append(f"compression {details['compression']}")
    if sizes:
        lines.append(", ".join(sizes))
    if details.get("readable") is False:
        lines.append(f"[red]Cannot be read:[/red] {escape(str(details.get('reason') or 'no reason given'))}")
    return "\n".join(lines)


def histogram_title(branch: str, histogram: Any, width: int) -> str:
    """Return the longest title of a branch histogram that fits in one line of ``width`` cells.

    ``plots.render_histogram`` appends " (N outside the range)" and leaves out a
    title wider than the plot, so the title drops details until the whole line fits.
    """
    outside = histogram.underflow + histogram.overflow
    room = width - (len(f" ({outside} outside the range)") if outside else 0)
    nonfinite = f", {histogram.n_nonfinite:,} NaN/inf" if histogram.n_nonfinite else ""
    candidates = [
        f"{branch} ({histogram.total:,} values{nonfinite})",
        f"{branch} ({histogram.total:,} values)",
        branch,
    ]
    for title in candidates:
        if len(title) <= room:
            return title
    return branch[: max(room - 1, 0)] + "…" if room > 1 else ""


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class FilesScreen(Screen[None]):
    """Browse datasets down to branches and see a histogram of the branch under the cursor."""

    TITLE = "Files"
    CSS_PATH = "files.tcss"
    # The tree takes the keys from the first paint, so the number keys switch screens
    # while the structure loads and typing into the filter needs "/" first.
    AUTO_FOCUS = "#files-tree"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_tree", "Tree", show=False),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.histograms: dict[HistogramKey, Any] = {}
        self.failed_histograms: dict[HistogramKey, str] = {}
        # Key of the branch under the cursor, or None when the cursor is on any other node.
        self.selected_key: HistogramKey | None = None
        self.building: set[HistogramKey] = set()
        self.loaded = False
        # Incremented by each reload, so that messages of an older inspection are dropped.
        self.generation = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="files-left"):
                yield Input(placeholder="filter branches (/)", id="files-filter", compact=True)
                yield Static("", id="files-status", markup=False)
                yield DatasetTree(id="files-tree")
            with Vertical(id="files-right"):
                yield Static("Reading the file structure…", id="files-details")
                yield PlotView("Select a branch to see its histogram.", id="files-plot")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.loaded = False
        self.generation += 1
        paths = [Path(path) for path in self.app.dataset_paths]  # type: ignore[attr-defined]
        tree = self.query_one(DatasetTree)
        tree.set_datasets([], self.query_one("#files-filter", Input).value)
        for path in paths:
            tree.add_dataset(path)
        self._set_status(f"Listing the files of {plural(len(paths), 'path')}…", loading=True)
        self._inspect(paths, self.generation)

    def action_focus_filter(self) -> None:
        self.query_one("#files-filter", Input).focus()

    def action_focus_tree(self) -> None:
        self.query_one(DatasetTree).focus()

    def _set_status(self, text: str, loading: bool) -> None:
        status = self.query_one("#files-status", Static)
        status.update(text)
        status.set_class(loading, "loading")

    @work(thread=True, exclusive=True, group="files-inspect", exit_on_error=False, description="inspect files")
    def _inspect(self, paths: list[Path], generation: int) -> None:
        """List the files of every path, then inspect them one by one and post each structure."""
        from cmsgen.engine.errors import CmsgenError
        from cmsgen.engine.sources.inspect import expand_paths, inspect_file

        worker = get_current_worker()
        listed: list[tuple[int, list[Path]]] = []
        for index, path in enumerate(paths):
            try:
                files = expand_paths(path)
            except CmsgenError as error:
                log.warning("listing %s failed: %s", path, error.message)
                self.post_message(DatasetListed(generation, index, 0, error.message))
                continue
            listed.append((index, files))
            self.post_message(DatasetListed(generation, index, len(files)))

        # The smallest files go first, so that most of the tree appears before a large file is
        # read (an EDM file probes each object branch, which can take seconds). The tree keeps
        # its files sorted by path whatever the order.
        queue = sorted(((index, file) for index, files in listed for file in files), key=lambda item: _file_size(item[1]))
        for position, (index, file) in enumerate(queue, start=1):
            if worker.is_cancelled:
                return
            self.post_message(FileStarted(generation, file, position, len(queue)))
            try:
                structure = inspect_file(file).to_dict()
            except CmsgenError as error:
                log.warning("inspecting %s failed: %s", file, error.message, exc_info=True)
                structure = {"path": str(file), "format": file.suffix.lstrip(".") or "?", "size_bytes": None,
                             "error": error.message, "objects": []}
            self.post_message(FileInspected(generation, index, structure))
        self.post_message(StructureLoaded(generation))

    def on_dataset_listed(self, message: DatasetListed) -> None:
        if message.generation != self.generation:
            return
        tree = self.query_one(DatasetTree)
        if message.error is not None:
            tree.set_dataset_error(message.index, message.error)
            self.notify(message.error, title="Cannot inspect", severity="error", timeout=10)
        else:
            tree.set_file_count(message.index, message.n_files)
        self._refresh_details()

    def on_file_started(self, message: FileStarted) -> None:
        if message.generation != self.generation:
            return
        self._set_status(f"Reading file {message.position} of {message.total}: {message.path.name}…", loading=True)

    def on_file_inspected(self, message: FileInspected) -> None:
        if message.generation != self.generation:
            return
        self.query_one(DatasetTree).add_file(message.index, message.structure)
        self._refresh_details()

    def on_structure_loaded(self, message: StructureLoaded) -> None:
        if message.generation != self.generation:
            return
        self.loaded = True
        tree = self.query_one(DatasetTree)
        n_files = tree.file_count()
        self._set_status(f"{plural(n_files, 'file')} in {plural(tree.dataset_count(), 'dataset')}", loading=False)

    @on(Input.Changed, "#files-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        shown = self.query_one(DatasetTree).apply_filter(event.value)
        if event.value:
            verb = "matches" if shown == 1 else "match"
            self.query_one("#files-details", Static).update(f"{plural(shown, 'branch')} {verb} {escape(repr(event.value))}.")

    @on(Input.Submitted, "#files-filter")
    def _filter_submitted(self) -> None:
        self.action_focus_tree()

    @on(Tree.NodeHighlighted)
    def _node_highlighted(self, event: Tree.NodeHighlighted[NodeInfo]) -> None:
        info = event.node.data
        if info is None:
            return
        # Every node clears the selected branch key, so a histogram that arrives late is cached but not shown.
        self.selected_key = None
        if info.file is not None:
            # A dataset node selects the dataset's path. A file node and any node inside a file select that file.
            self.app.select_dataset([info.file])  # type: ignore[attr-defined]
        self._show_details(info)
        self._show_plot(info)

    def _show_details(self, info: NodeInfo) -> None:
        details = self.query_one("#files-details", Static)
        details.update(describe_node(info))
        # An unreadable node has no histogram, so its error message may take the plot's lines.
        details.set_class(bool(info.details.get("error")), "unreadable")

    def _refresh_details(self) -> None:
        """Describe the node under the cursor again, because its dataset may have changed."""
        node = self.query_one(DatasetTree).cursor_node
        if node is not None and node.data is not None:
            self._show_details(node.data)

    def _show_plot(self, info: NodeInfo) -> None:
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
            if key not in self.building:
                self.building.add(key)
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
            self.post_message(HistogramFailed(key, error.message))
            return
        except (ValueError, TypeError) as error:
            log.warning("histogram of %s:%s/%s failed", file, object_path, branch, exc_info=True)
            self.post_message(HistogramFailed(key, f"{branch} cannot be histogrammed: {error}"))
            return
        except Exception as error:  # noqa: BLE001 - any other failure must still end the "Building…" state
            log.exception("histogram of %s:%s/%s failed unexpectedly", file, object_path, branch)
            self.post_message(
                HistogramFailed(key, f"{branch} could not be read ({type(error).__name__}: {error}); the traceback is in the log file.")
            )
            return
        self.post_message(HistogramReady(key, histogram))

    def on_histogram_ready(self, message: HistogramReady) -> None:
        self.building.discard(message.key)
        self.histograms[message.key] = message.histogram
        if message.key == self.selected_key:
            self._show_histogram(message.key)

    def on_histogram_failed(self, message: HistogramFailed) -> None:
        self.building.discard(message.key)
        self.failed_histograms[message.key] = message.reason
        if message.key == self.selected_key:
            self.query_one("#files-plot", PlotView).show_message(message.reason)

    def _show_histogram(self, key: HistogramKey) -> None:
        histogram = self.histograms[key]
        plot = self.query_one("#files-plot", PlotView)
        branch = key[2]
        if histogram.total == 0:
            plot.show_message(f"{branch} has no finite values in the first {key[3]:,} entries.")
            return
        plot.renderer = lambda width, height: plots.render_histogram(histogram, width, height, histogram_title(branch, histogram, width))
