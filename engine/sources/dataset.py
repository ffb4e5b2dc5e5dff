"""A dataset: one or more files opened together, with a layout and chunked canonical events."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import awkward as ak
import pyarrow.parquet as pq

from cmsgen.engine.canonical import CanonicalChunk, FieldStatus, RawKey, build_events, plan_collection
from cmsgen.engine.errors import CmsgenError, NoEventsError, UnreadableFileError
from cmsgen.engine.layouts.registry import FieldSpec, Layout, LayoutChoice, available_layouts, detect_layout
from cmsgen.engine.sources.csvfile import CsvHeader, count_rows, iterate_csv, read_header
from cmsgen.engine.sources.discovery import DataFile, discover_files
from cmsgen.engine.sources.rootfile import (
    TreeInfo,
    branch_types,
    damaged_rntuple_page,
    describe_read_error,
    is_rntuple,
    judge_branch,
    list_trees,
    open_root,
)

log = logging.getLogger(__name__)

DEFAULT_STEP_SIZE = 200_000
CONVERSION_ROUTE = (
    "convert the AOD with the CMS Physics Object Extractor Tool (POET) or AOD2NanoAOD in a CMSSW "
    "release of the same era, then open the output here"
)


@dataclass
class FileEntry:
    """One file of a dataset as opened: its format, trees, layout and problems."""

    data_file: DataFile
    trees: list[TreeInfo] = field(default_factory=list)
    main_tree: str | None = None
    entries: int = 0
    branches: dict[str | None, dict[str, str]] = field(default_factory=dict)  # tree -> name -> type
    choice: LayoutChoice | None = None
    error: str | None = None
    cleaning: list[str] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    # EDM products outside the layout that uproot reads without CMSSW: {"branch", "type"}.
    readable_edm: list[dict[str, str]] = field(default_factory=list)
    csv_header: CsvHeader | None = None
    plans: dict[str, dict[str, FieldSpec]] = field(default_factory=dict)
    field_statuses: list[FieldStatus] = field(default_factory=list)
    # uproot tree objects by path, kept so that reading does not parse the tree headers again
    tree_objects: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path:
        return self.data_file.path

    @property
    def readable(self) -> bool:
        return self.error is None

    def branch_names(self, tree: str | None = None) -> set[str]:
        return set(self.branches.get(tree, {}))


def _open_root_entry(entry: FileEntry, layouts: list[Layout], forced: Layout | None, judge: bool) -> None:
    root_file = open_root(entry.path)
    entry.trees = list_trees(root_file, entry.path)
    if not entry.trees:
        entry.error = f"The ROOT file {entry.path} contains no TTree or RNTuple; pass a file with event trees."
        return
    per_tree: dict[str, dict[str, str]] = {}
    for info in entry.trees:
        try:
            entry.tree_objects[info.path] = root_file[info.path]
            per_tree[info.path] = branch_types(entry.tree_objects[info.path])
        except Exception as error:
            log.warning("cannot list the branches of %s in %s: %s", info.path, entry.path, error)
            per_tree[info.path] = {}
            continue
        if info.kind == "rntuple":
            damage = damaged_rntuple_page(entry.tree_objects[info.path])
            if damage is not None:
                entry.error = f"The RNTuple {info.path} in {entry.path} is damaged: {damage.description}. Copy the file again."
                return
    entry.branches = dict(per_tree)

    best: tuple[LayoutChoice, str] | None = None
    for info in entry.trees:
        names = set(per_tree[info.path]) | {f"{t}:{b}" for t, mapping in per_tree.items() for b in mapping}
        candidates = [forced] if forced else layouts
        choice = detect_layout(names, candidates)
        if choice is None and forced is not None:
            continue
        if choice and (best is None or (choice.layout.priority, len(choice.matched)) > (best[0].layout.priority, len(best[0].matched))):
            best = (choice, info.path)
    if best is None and forced is not None:
        entry.error = f"The layout {forced.name} does not fit {entry.path}: its branches {', '.join(forced.required)} are not all present."
        return
    if best is not None:
        entry.choice, entry.main_tree = best
    else:
        entry.main_tree = max(entry.trees, key=lambda t: t.entries).path
    main = next(t for t in entry.trees if t.path == entry.main_tree)
    entry.entries = main.entries
    # Branch lookups by the layout use None for the main tree.
    entry.branches[None] = per_tree.get(entry.main_tree, {})
    if judge:
        _judge_unreadable(entry, root_file)


def _judge_unreadable(entry: FileEntry, root_file: Any) -> None:
    """Record branches that cannot be read, without reading all data.

    For EDM files every product outside the layout's split candidate collections
    needs CMSSW, and is listed by product name without touching its baskets, unless
    it is an unsplit branch that uproot reads (a plain ``std::vector<uint16_t>``
    such as ``BranchListIndexes``, or an object whose first entry reads).
    """
    layout = entry.choice.layout if entry.choice else None
    tree = entry.tree_objects.get(entry.main_tree) or root_file[entry.main_tree]
    if layout is not None and layout.edm:
        used = {spec.branch.split(".obj")[0] for c in layout.collections.values() for spec in c.fields.values()}
        used |= {spec.branch.split(".obj")[0] for spec in layout.met.values()}
        for branch in tree.branches:
            product = branch.name.rstrip(".")
            if product in used:
                continue
            if not branch.branches and judge_branch(branch) is None:
                entry.readable_edm.append({"branch": branch.name, "type": branch.typename})
                continue
            entry.unreadable.append(
                {
                    "file": str(entry.path),
                    "branch": branch.name,
                    "reason": f"EDM product {product.split('_')[0]} (module {'_'.join(product.split('_')[1:]) or '?'}) needs CMSSW's dictionaries to deserialise",
                    "route": CONVERSION_ROUTE,
                }
            )
        return
    if is_rntuple(tree):
        return  # RNTuple fields are judged when read
    # Leaves are judged one by one. A split parent with no data of its own (a
    # struct read as a group of its leaves) is unreadable when one of its leaves is.
    bad_parents: dict[str, str] = {}
    for branch in tree.itervalues(recursive=True):
        if branch.branches:
            continue
        reason = judge_branch(branch)
        if reason:
            entry.unreadable.append({"file": str(entry.path), "branch": branch.name, "reason": reason, "route": ""})
            parent = branch.parent
            while parent is not None and parent is not tree and hasattr(parent, "interpretation"):
                if type(parent.interpretation).__name__ == "AsGrouped":
                    bad_parents[parent.name] = branch.name
                parent = getattr(parent, "parent", None)
    for name, leaf in sorted(bad_parents.items()):
        entry.unreadable.append(
            {
                "file": str(entry.path),
                "branch": name,
                "reason": f"split object whose member {leaf} cannot be deserialised, so the whole object cannot be read",
                "route": "",
            }
        )


def _open_csv_entry(entry: FileEntry, layouts: list[Layout], forced: Layout | None) -> None:
    header = read_header(entry.path)
    entry.csv_header = header
    entry.cleaning = list(header.cleaning)
    entry.branches = {None: {name: "float64" for name in header.names}}
    entry.entries = count_rows(entry.path)
    entry.trees = [TreeInfo("csv", "table", entry.entries)]
    choice = detect_layout(set(header.names), [forced] if forced else layouts)
    entry.choice = choice
    if choice is None and forced is not None:
        entry.error = f"The layout {forced.name} does not fit {entry.path}: its columns {', '.join(forced.required)} are not all present."


def _open_parquet_entry(entry: FileEntry, layouts: list[Layout], forced: Layout | None) -> None:
    try:
        metadata = pq.ParquetFile(entry.path)
    except Exception as error:
        raise UnreadableFileError(f"The Parquet file {entry.path} cannot be opened ({error}); it may be truncated: copy it again.") from None
    schema = metadata.schema_arrow
    entry.branches = {None: {name: str(schema.field(name).type) for name in schema.names}}
    entry.entries = metadata.metadata.num_rows
    entry.trees = [TreeInfo("parquet", "table", entry.entries)]
    entry.choice = detect_layout(set(schema.names), [forced] if forced else layouts)


T = TypeVar("T")
_END = object()


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """Yield the items of ``items`` while a worker thread already produces the next one.

    Reading and decompressing the next chunk (zlib releases the GIL) then overlaps with
    the caller's work on the current one, at the cost of one more chunk in memory.
    Exceptions reach the caller at the item that raised them.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cmsgen-read") as pool:
        upcoming = pool.submit(next, items, _END)
        while True:
            item = upcoming.result()
            if item is _END:
                return
            upcoming = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]


class Dataset:
    """Files opened together as one dataset, sharing one layout.

    Files that cannot be opened are kept in ``files`` with their ``error`` set,
    so a report can list them, and are skipped when events are read.
    """

    def __init__(self, files: list[FileEntry], layout: LayoutChoice | None) -> None:
        self.files = files
        self.choice = layout

    @property
    def layout(self) -> Layout | None:
        return self.choice.layout if self.choice else None

    @property
    def readable_files(self) -> list[FileEntry]:
        return [f for f in self.files if f.readable and f.choice is not None and self.layout and f.choice.layout.name == self.layout.name]

    @property
    def n_entries(self) -> int:
        return sum(f.entries for f in self.readable_files)

    def require_layout(self) -> Layout:
        """Return the dataset's layout, or raise when no known layout matches its files.

        Raises:
            NoEventsError: Every readable file has 0 entries, which matters more than its branch names.
            UnreadableFileError: No known layout matches the branches.
        """
        if self.layout is None:
            names = ", ".join(str(f.path) for f in self.files[:3])
            readable = [f for f in self.files if f.readable]
            if readable and all(f.entries == 0 for f in readable):
                raise NoEventsError(f"Every tree and table in {names} has 0 entries; give files with events.")
            raise UnreadableFileError(
                f"No known layout matches the branches of {names}; write a layout TOML file that maps its branches and pass it with --layout-file FILE."
            )
        return self.layout

    def iterate(self, step_size: int = DEFAULT_STEP_SIZE, max_events: int | None = None) -> Iterator[tuple[FileEntry, CanonicalChunk]]:
        """Yield (file, chunk) pairs of canonical events, reading at most ``step_size`` entries at a time."""
        self.require_layout()
        remaining = max_events
        for entry in self.readable_files:
            for chunk in self.iterate_file(entry, step_size):
                if remaining is not None:
                    if remaining <= 0:
                        return
                    if len(chunk.events) > remaining:
                        chunk = CanonicalChunk(chunk.events[:remaining], chunk.cross_checks)
                    remaining -= len(chunk.events)
                yield entry, chunk

    def iterate_events(self, step_size: int = DEFAULT_STEP_SIZE, max_events: int | None = None) -> Iterator[ak.Array]:
        """Yield chunks of canonical events as awkward record arrays."""
        for _, chunk in self.iterate(step_size, max_events):
            yield chunk.events

    def iterate_file(self, entry: FileEntry, step_size: int = DEFAULT_STEP_SIZE) -> Iterator[CanonicalChunk]:
        """Yield chunks of canonical events of one readable file of this dataset."""
        layout = entry.choice.layout  # type: ignore[union-attr]
        needed = needed_branches(layout, entry)
        if entry.data_file.format == "csv":
            columns = sorted({b for (_, b) in needed})
            assert entry.csv_header is not None
            for block in iterate_csv(entry.path, entry.csv_header, columns, step_size):
                raw = {(None, name): values for name, values in block.items()}
                n = len(next(iter(block.values()))) if block else 0
                yield build_events(layout, entry.plans, raw, n)
            return
        if entry.data_file.format == "parquet":
            columns = sorted({b for (_, b) in needed})
            parquet = pq.ParquetFile(entry.path)
            for batch in parquet.iter_batches(batch_size=step_size, columns=columns):
                array = ak.from_arrow(batch)
                raw = {(None, name): array[name] for name in columns}
                yield build_events(layout, entry.plans, raw, len(array))
            return
        yield from self._iterate_root(entry, layout, needed, step_size)

    def _iterate_root(self, entry: FileEntry, layout: Layout, needed: set[RawKey], step_size: int) -> Iterator[CanonicalChunk]:
        by_tree: dict[str | None, list[str]] = {}
        for tree, branch in needed:
            by_tree.setdefault(tree, []).append(branch)
        trees = {}
        for name in by_tree:
            path = name if name is not None else entry.main_tree
            if path not in entry.tree_objects:
                entry.tree_objects[path] = open_root(entry.path)[path]
            trees[name] = entry.tree_objects[path]
        lengths = {name: int(tree.num_entries) for name, tree in trees.items()}
        n_total = min(lengths.values()) if lengths else entry.entries
        if len(set(lengths.values())) > 1:
            log.warning("trees of %s have different lengths %s; reading the first %d entries of each", entry.path, lengths, n_total)
        # uproot's iterate keeps the basket that straddles two steps, so no basket is decompressed twice.
        # Trees joined entry by entry (POET) step through the same entry ranges side by side.
        steps = {
            name: trees[name].iterate(sorted(set(branches)), step_size=step_size, entry_stop=n_total, library="ak")
            for name, branches in by_tree.items()
        }
        start = 0
        while start < n_total:
            stop = min(start + step_size, n_total)
            raw: dict[RawKey, ak.Array] = {}
            for name, branches in by_tree.items():
                try:
                    arrays = next(steps[name])
                except Exception as error:
                    raise UnreadableFileError(read_failure(entry.path, start, stop, error)) from None
                for branch in branches:
                    raw[(name, branch)] = arrays[branch]
            yield build_events(layout, entry.plans, raw, stop - start)
            start = stop


def read_failure(path: Path | str, start: int, stop: int, error: BaseException) -> str:
    """Return the message of a failed read of entries ``start`` to ``stop`` of a ROOT file."""
    return f"Reading entries {start}-{stop} of {path} failed ({describe_read_error(error)}); the file may be truncated: copy it again."


def needed_branches(layout: Layout, entry: FileEntry) -> set[RawKey]:
    needed: set[RawKey] = set()
    for collection in layout.collections.values():
        for spec in entry.plans.get(collection.name, {}).values():
            if collection.kind == "flat":
                needed.update((collection.tree, spec.expand(i)) for i in collection.indices)
            else:
                needed.add((collection.tree, spec.branch))
        if collection.kind == "jagged" and collection.counter and collection.counter in entry.branch_names(collection.tree):
            if entry.plans.get(collection.name):
                needed.add((collection.tree, collection.counter))
    for spec in layout.event.values():
        if spec.branch in entry.branch_names(layout.event_tree):
            needed.add((layout.event_tree, spec.branch))
    for spec in layout.met.values():
        if spec.branch in entry.branch_names(layout.met_tree):
            needed.add((layout.met_tree, spec.branch))
    for branch in layout.event_observables.values():
        if branch in entry.branch_names(None):
            needed.add((None, branch))
    return needed


def _plan(entry: FileEntry) -> None:
    if entry.choice is None:
        return
    layout = entry.choice.layout
    available = {tree: set(mapping) for tree, mapping in entry.branches.items()}
    for collection in layout.collections.values():
        stored, statuses = plan_collection(collection, available)
        entry.plans[collection.name] = stored
        entry.field_statuses.extend(statuses)


def open_dataset(
    paths: list[str | Path] | tuple[str | Path, ...] | str | Path,
    layout: str | Layout | None = None,
    layout_files: tuple[str | Path, ...] = (),
    judge_branches: bool = True,
) -> Dataset:
    """Open files, globs or directories as one dataset and choose its layout.

    ``layout`` forces a layout by name or object. Without it, each file's layout
    is detected from its branch names, and the dataset takes the most common one.
    Raises DataNotFoundError for missing paths and UnreadableFileError when no
    file can be read at all; single bad files are kept with their ``error``.
    """
    layouts = available_layouts(tuple(layout_files))
    forced = None
    if isinstance(layout, Layout):
        forced = layout
    elif isinstance(layout, str):
        matches = [item for item in layouts if item.name == layout]
        if not matches:
            from cmsgen.engine.errors import ConfigError

            raise ConfigError(f"Layout {layout!r} is unknown; available layouts: {', '.join(sorted(item.name for item in layouts))}.")
        forced = matches[0]

    entries = []
    for data_file in discover_files(paths):
        entry = FileEntry(data_file)
        try:
            if data_file.format == "csv":
                _open_csv_entry(entry, layouts, forced)
            elif data_file.format == "parquet":
                _open_parquet_entry(entry, layouts, forced)
            else:
                _open_root_entry(entry, layouts, forced, judge_branches)
        except CmsgenError as error:
            entry.error = error.message
        except OSError as error:
            entry.error = f"The file {data_file.path} cannot be read ({error.strerror or error}); check its permissions."
        if entry.error:
            log.warning("unreadable file in dataset: %s", entry.error)
        _plan(entry)
        entries.append(entry)

    readable = [e for e in entries if e.readable]
    if not readable:
        first = entries[0]
        if len(entries) == 1:
            raise UnreadableFileError(first.error or f"The file {first.path} cannot be read.")
        raise UnreadableFileError(f"None of the {len(entries)} files can be read; the first problem: {first.error}")
    counts = Counter(e.choice.layout.name for e in readable if e.choice)
    choice = None
    if counts:
        name = counts.most_common(1)[0][0]
        choice = next(e.choice for e in readable if e.choice and e.choice.layout.name == name)
    return Dataset(entries, choice)


__all__ = ["DEFAULT_STEP_SIZE", "Dataset", "FileEntry", "open_dataset"]
