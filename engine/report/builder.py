"""Build the missing-field report of a dataset in one chunked pass over its files."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from cmsgen.engine.canonical import CANONICAL_COLLECTIONS, CanonicalChunk
from cmsgen.engine.errors import CmsgenError
from cmsgen.engine.features.sets import FeatureSet, get_feature_set
from cmsgen.engine.layouts.registry import CANONICAL_FIELDS, CollectionSpec, Layout
from cmsgen.engine.report.checks import CrossCheckTotals, DuplicateFinder, FieldQuality, Multiplicity
from cmsgen.engine.report.typenames import canonical_type_name
from cmsgen.engine.training.splits import SMALL_TRAINING_EVENTS
from cmsgen.engine.sources import DEFAULT_STEP_SIZE, Dataset, FileEntry, open_dataset
from cmsgen.engine.sources.dataset import prefetched
from cmsgen.engine.sources.rootfile import is_rntuple, open_root

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ProgressCallback = Callable[[float, str], None]

# The feature sets every report judges, unless the caller names one.
DEFAULT_VERDICT_SETS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("dimuon", {}),
    ("leading-objects", {"collection": "muons", "n": 2}),
    ("leading-objects", {"collection": "electrons", "n": 2}),
    ("leading-objects", {"collection": "jets", "n": 2, "fields": ["pt", "eta", "phi", "mass"]}),
)

NO_EVENTS_NOTE = (
    "No events were read, so the value quality, stored-against-derived, duplicate and multiplicity counts are empty; "
    "the canonical fields follow from the layout and the branch names alone"
)

# Meaning of the values of the EDM framework branches that uproot reads without CMSSW.
# Only the branches found in the AOD test file of the project are listed.
EDM_FRAMEWORK_BRANCHES = {
    "BranchListIndexes": (
        "indices into the BranchIDLists of the MetaData tree, which CMSSW uses to find the process that wrote each "
        "product; they are bookkeeping without a physics meaning"
    ),
}


@dataclass
class Report:
    """The missing-field report; ``to_dict`` gives the JSON documented in docs/report-schema.md."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    @property
    def n_events(self) -> int:
        return int(self.data["n_events"])

    def verdict(self, feature_set: str) -> dict[str, Any] | None:
        return next((v for v in self.data["verdict"] if v["feature_set"] == feature_set), None)


def _verdict_label(fs: FeatureSet) -> str:
    if fs.name == "dimuon":
        return "dimuon"
    return f"leading-objects[{fs.collection}, n={fs.n_objects}]"


def _file_dict(entry: FileEntry) -> dict[str, Any]:
    return {
        "path": str(entry.path),
        "format": entry.data_file.format,
        "layout": entry.choice.layout.name if entry.choice else None,
        "layout_reason": entry.choice.reason if entry.choice else "no known layout matches the branch names",
        "trees": [{"path": t.path, "kind": t.kind, "entries": t.entries} for t in entry.trees],
        "main_tree": entry.main_tree,
        "entries": entry.entries,
        "readable": entry.readable,
        "error": entry.error,
    }


def _readable_edm_notes(entry: FileEntry) -> list[str]:
    """Return a note for each EDM product of ``entry`` that uproot reads although the layout does not use it."""
    notes = []
    for product in entry.readable_edm:
        name, typename = product["branch"], product["type"]
        meaning = EDM_FRAMEWORK_BRANCHES.get(name.rstrip("."))
        if meaning:
            notes.append(f"{entry.path}: the EDM branch {name} ({typename}) can be read without CMSSW, but its values are {meaning}")
        else:
            layout = entry.choice.layout.name if entry.choice else "?"
            notes.append(
                f"{entry.path}: the EDM branch {name} ({typename}) can be read without CMSSW, "
                f"but the layout {layout} does not use it, so the report does not read it"
            )
    return notes


def _drift(files: list[FileEntry]) -> list[dict[str, Any]]:
    """Compare the main-tree branches of each readable file with the first one of its layout.

    Types are compared in one spelling (``double`` equals ``float64``), and only between
    files that store them. A CSV file stores text, and the reader gives every column the type
    float64 whatever the text is, so a CSV file takes part in no type comparison. A branch
    whose type could not be listed (an empty name) is not compared either.
    """
    reference: dict[str, FileEntry] = {}
    drift = []
    for entry in files:
        if not entry.readable:
            continue
        key = entry.choice.layout.name if entry.choice else "none"
        if key not in reference:
            reference[key] = entry
            continue
        ref = reference[key].branches.get(None, {})
        own = entry.branches.get(None, {})
        missing = sorted(set(ref) - set(own))
        extra = sorted(set(own) - set(ref))
        changed = []
        if "csv" not in (entry.data_file.format, reference[key].data_file.format):
            changed = sorted(name for name in set(ref) & set(own) if _type_changed(ref[name], own[name]))
        if missing or extra or changed:
            drift.append(
                {
                    "file": str(entry.path),
                    "reference": str(reference[key].path),
                    "missing": missing,
                    "extra": extra,
                    "type_changes": [{"branch": n, "reference": ref[n], "file": own[n]} for n in changed],
                }
            )
    return drift


def _type_changed(reference: str, other: str) -> bool:
    """Return True when two known branch type names differ in their canonical spelling."""
    if not reference or not other:
        return False
    return canonical_type_name(reference) != canonical_type_name(other)


def _field_table(files: list[FileEntry], layout: str | None) -> list[dict[str, Any]]:
    """Per canonical field of the files of ``layout``, the status most files have, and the files that differ.

    The statuses follow from the layout and the branch names alone, so files whose events
    could not be read count too.
    """
    per_field: dict[tuple[str, str], list[tuple[str, Any]]] = defaultdict(list)
    for entry in files:
        if entry.choice is None or entry.choice.layout.name != layout:
            continue
        for status in entry.field_statuses:
            per_field[(status.collection, status.field)].append((str(entry.path), status))
    rows = []
    order = {name: i for i, name in enumerate(CANONICAL_COLLECTIONS)}
    for (collection, name), items in sorted(per_field.items(), key=lambda kv: (order.get(kv[0][0], 99), CANONICAL_FIELDS.index(kv[0][1]))):
        common = Counter(s.status for _, s in items).most_common(1)[0][0]
        representative = next(s for _, s in items if s.status == common)
        row = representative.to_dict()
        row["files_differing"] = [{"file": path, "status": s.status} for path, s in items if s.status != common]
        rows.append(row)
    return rows


@dataclass
class ReportTotals:
    """Counts of the report's pass over the events, updated chunk by chunk.

    Totals of disjoint parts of a dataset merge into the totals of the whole, in file order,
    so that a report built from parts counted in parallel equals the serial one.
    """

    quality: dict[tuple[str, str], FieldQuality] = field(default_factory=dict)
    cross: dict[tuple[str, str], CrossCheckTotals] = field(default_factory=dict)
    duplicates: DuplicateFinder = field(default_factory=DuplicateFinder)
    multiplicity: Multiplicity = field(default_factory=Multiplicity)
    selected: Counter[str] = field(default_factory=Counter)
    n_events: int = 0
    # Files whose reading failed part way, as {"file": path, "reason": message}.
    read_errors: list[dict[str, str]] = field(default_factory=list)

    def update(self, chunk: CanonicalChunk, verdict_sets: list[FeatureSet]) -> None:
        """Add one chunk of canonical events."""
        events = chunk.events
        self.n_events += len(events)
        _update_quality(self.quality, events)
        for check in chunk.cross_checks:
            key = (check.collection, check.name)
            if key not in self.cross:
                self.cross[key] = CrossCheckTotals(check.name, check.collection, check.relative_tolerance)
            self.cross[key].update(check)
        self.duplicates.update(events)
        self.multiplicity.update(events, CANONICAL_COLLECTIONS)
        cache: dict[Any, Any] = {}
        for fs in verdict_sets:
            if fs.collection in events.fields and not fs.missing_fields(set(events[fs.collection].fields)):
                self.selected[_verdict_label(fs)] += fs.count_selected(events, cache)

    def merge(self, other: ReportTotals) -> None:
        """Add the totals of ``other``, counted on the files that follow these."""
        for key, quality in other.quality.items():
            if key in self.quality:
                self.quality[key].merge(quality)
            else:
                self.quality[key] = quality
        for key, totals in other.cross.items():
            if key in self.cross:
                self.cross[key].merge(totals)
            else:
                self.cross[key] = totals
        self.duplicates.merge(other.duplicates)
        self.multiplicity.merge(other.multiplicity)
        self.selected.update(other.selected)
        self.n_events += other.n_events
        self.read_errors.extend(other.read_errors)


def count_file(
    dataset: Dataset,
    entry: FileEntry,
    verdict_sets: list[FeatureSet],
    step_size: int = DEFAULT_STEP_SIZE,
    progress: Callable[[int], None] | None = None,
    read_ahead: bool = True,
) -> ReportTotals:
    """Return the totals of one readable file; a read that fails part way keeps the chunks read before.

    ``progress`` is called with the number of events of each chunk. With ``read_ahead``,
    a worker thread reads the next chunk while this one is counted.
    """
    totals = ReportTotals()
    chunks = dataset.iterate_file(entry, step_size)
    try:
        for chunk in prefetched(chunks) if read_ahead else chunks:
            totals.update(chunk, verdict_sets)
            if progress:
                progress(len(chunk.events))
    except CmsgenError as error:
        log.warning("reading %s failed: %s", entry.path, error.message)
        totals.read_errors.append({"file": str(entry.path), "reason": error.message})
    return totals


def verdict_sets_for(feature_set: str | None, feature_options: dict[str, Any] | None = None) -> list[FeatureSet]:
    """Return the feature sets that the report judges: the one named, or the defaults."""
    if feature_set:
        return [get_feature_set(feature_set, **(feature_options or {}))]
    return [get_feature_set(name, **options) for name, options in DEFAULT_VERDICT_SETS]


def build_report(
    paths: list[str | Path] | tuple[str | Path, ...] | str | Path,
    feature_set: str | None = None,
    feature_options: dict[str, Any] | None = None,
    layout: str | None = None,
    layout_files: tuple[str | Path, ...] = (),
    step_size: int = DEFAULT_STEP_SIZE,
    progress: ProgressCallback | None = None,
    dataset: Dataset | None = None,
    read_ahead: bool = True,
) -> Report:
    """Read every file of the dataset once, in chunks, and return its missing-field report.

    A file that cannot be opened or read is listed under ``unreadable`` and the
    report goes on with the rest. Raises DataNotFoundError or UnreadableFileError
    only when nothing at all can be read. ``read_ahead`` reads the next chunk in a
    worker thread while the current one is counted.
    """
    started = time.perf_counter()
    if dataset is None:
        dataset = open_dataset(paths, layout=layout, layout_files=layout_files)
    verdict_sets = verdict_sets_for(feature_set, feature_options)
    totals = ReportTotals()
    total = max(dataset.n_entries, 1)

    read = 0
    for entry in dataset.readable_files:

        def count(n: int, name: str = entry.path.name) -> None:
            nonlocal read
            read += n
            progress(min(read / total, 1.0), f"read {read:,} events of {name}")  # type: ignore[misc]

        totals.merge(count_file(dataset, entry, verdict_sets, step_size, count if progress else None, read_ahead))

    return finish_report(dataset, paths, verdict_sets, totals, started, progress)


def finish_report(
    dataset: Dataset,
    paths: list[str | Path] | tuple[str | Path, ...] | str | Path,
    verdict_sets: list[FeatureSet],
    totals: ReportTotals,
    started: float,
    progress: ProgressCallback | None = None,
) -> Report:
    """Assemble the report from the dataset's file metadata and the totals of its events."""
    unreadable: list[dict[str, Any]] = []
    notes: list[str] = []
    for entry in dataset.files:
        if not entry.readable:
            unreadable.append({"file": str(entry.path), "branch": None, "reason": entry.error, "route": ""})
        unreadable.extend(entry.unreadable)
        notes.extend(_readable_edm_notes(entry))
        for tree in entry.trees:
            if tree.entries == 0:
                notes.append(f"{entry.path}: {tree.kind} {tree.path} has zero entries")
    readable = dataset.readable_files
    chosen = dataset.layout.name if dataset.layout else None
    for entry in dataset.files:
        if not entry.readable or entry in readable:
            continue
        if entry.choice is None:
            notes.append(f"{entry.path}: no known layout matches its branches, so its events are not read")
        elif chosen is not None:
            notes.append(
                f"{entry.path}: its layout {entry.choice.layout.name} differs from the dataset's layout {chosen}, "
                "so its events are not read; report it on its own"
            )
    by_path = {str(entry.path): entry for entry in dataset.files}
    for error in totals.read_errors:
        unreadable.append({"file": error["file"], "branch": None, "reason": error["reason"], "route": ""})
        by_path[error["file"]].error = error["reason"]

    if readable and totals.n_events == 0:
        notes.append(NO_EVENTS_NOTE)

    raw_quality = _raw_branch_quality(dataset) if dataset.layout is None else []
    # to_dict frees the collected keys, so it runs once.
    duplicates = totals.duplicates.to_dict()
    verdict = _verdict(dataset, verdict_sets, totals, readable, duplicates["n_duplicates"])
    data = {
        "schema_version": SCHEMA_VERSION,
        "dataset": {"paths": [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)], "files": [_file_dict(e) for e in dataset.files]},
        "layout": {
            "name": dataset.layout.name if dataset.layout else None,
            "description": dataset.layout.description if dataset.layout else "",
            "reason": dataset.choice.reason if dataset.choice else "no known layout matches the branch names of any file",
            "source": dataset.layout.source if dataset.layout else None,
        },
        "n_events": totals.n_events,
        "fields": _field_table(dataset.files, chosen),
        "quality": [q.to_dict() for q in totals.quality.values()],
        "raw_branch_quality": raw_quality,
        "consistency": [c.to_dict() for c in totals.cross.values()],
        "duplicates": duplicates,
        "multiplicities": totals.multiplicity.to_dict(),
        "unreadable": unreadable,
        "drift": _drift(dataset.files),
        "cleaning": [{"file": str(e.path), "action": action} for e in dataset.files for action in e.cleaning],
        "notes": notes,
        "verdict": verdict,
        "elapsed_seconds": round(time.perf_counter() - started, 3),
    }
    if progress:
        progress(1.0, "report finished")
    return Report(data)


def _update_quality(quality: dict[tuple[str, str], FieldQuality], events: ak.Array) -> None:
    for collection in CANONICAL_COLLECTIONS:
        if collection not in events.fields:
            continue
        objects = events[collection]
        for name in objects.fields:
            if name not in CANONICAL_FIELDS and name != "energy":
                continue
            key = (collection, name)
            if key not in quality:
                quality[key] = FieldQuality(collection, name)
            quality[key].update(objects[name])
    if "met" in events.fields:
        for name in events.met.fields:
            key = ("met", name)
            if key not in quality:
                quality[key] = FieldQuality("met", name)
            quality[key].update(events.met[name])


def _verdict(
    dataset: Dataset, verdict_sets: list[FeatureSet], totals: ReportTotals, readable: list[FileEntry], duplicates: int
) -> list[dict[str, Any]]:
    """Return one verdict row per feature set; ``duplicates`` counts the rows that repeat a (run, event) pair."""
    # Every collection of the layout has field statuses, "missing" ones included, so
    # ``mapped`` lists what the layout maps and ``stored`` what the files store or derive.
    mapped = {s.collection for e in readable for s in e.field_statuses}
    stored = {s.collection for e in readable for s in e.field_statuses if s.status != "missing"}
    rows = []
    for fs in verdict_sets:
        label = _verdict_label(fs)
        row: dict[str, Any] = {"feature_set": label, "name": fs.name, "options": dict(fs.options), "trainable": False, "n_events": 0}
        if dataset.layout is None or not readable:
            row["reason"] = _no_layout_reason(dataset)
        elif fs.collection not in mapped:
            row["reason"] = f"the layout {dataset.layout.name} has no {fs.collection}"
        elif fs.collection not in stored:
            row["reason"] = _absent_collection_reason(dataset.layout, fs, readable)
        else:
            statuses = {(s.collection, s.field): s.status for e in readable for s in e.field_statuses}
            missing = [f for f in sorted(fs.required_fields()) if statuses.get((fs.collection, f), "missing") == "missing"]
            if missing:
                row["reason"] = f"{fs.collection} field(s) {', '.join(missing)} are neither stored nor derivable"
            else:
                row["n_events"] = int(totals.selected[label])
                row["trainable"] = row["n_events"] > 0
                selection = fs.selection_text()
                if totals.n_events == 0:
                    row["reason"] = f"no events were read, so none pass the selection ({selection})"
                else:
                    verb = "passes" if row["n_events"] == 1 else "pass"
                    row["reason"] = f"{_count(row['n_events'], 'event')} {verb} the selection ({selection})"
                    if 0 < row["n_events"] < SMALL_TRAINING_EVENTS:
                        row["reason"] += f"; fewer than {SMALL_TRAINING_EVENTS} events give a poor model"
                    if duplicates:
                        row["reason"] += f"; the count includes events whose (run, event) pair repeats ({duplicates:,} rows)"
        rows.append(row)
    return rows


def _no_layout_reason(dataset: Dataset) -> str:
    """Return the verdict reason for a dataset whose events cannot be read, with the next step."""
    readable = [entry for entry in dataset.files if entry.readable]
    if not readable:
        return "no file of the dataset can be read (the unreadable list gives the reason for each file)"
    unmatched = [entry for entry in readable if entry.choice is None]
    if not unmatched:
        return f"no readable file has the layout {dataset.layout.name}" if dataset.layout else "no readable file has a known layout"
    names = _shortened_names([entry.path.name for entry in unmatched], 3)
    if len(unmatched) == 1:
        return (
            f"no known layout matches the branches of {names}. "
            "To read its events, write a layout TOML file that maps its branches and pass it with --layout-file FILE"
        )
    return (
        f"no known layout matches the branches of the files {names}. "
        "To read their events, write a layout TOML file that maps their branches and pass it with --layout-file FILE"
    )


def _absent_collection_reason(layout: Layout, fs: FeatureSet, readable: list[FileEntry]) -> str:
    """Return the verdict reason for a collection that ``layout`` maps but no readable file stores.

    The reason names the tree or the branches that the layout reads the collection from,
    limited to the fields that ``fs`` needs when the layout maps any of them.
    """
    subject = "the file has no" if len(readable) == 1 else f"none of the {len(readable)} files has"
    spec = _collection_spec(layout, fs.collection)
    if spec is None:
        return f"{subject} {fs.collection} branches"
    if spec.tree is not None and not any(spec.tree in entry.branches for entry in readable):
        return f"{subject} {fs.collection} tree (missing {spec.tree})"
    branches_per_field = spec.branches()
    fields = [name for name in branches_per_field if name in fs.required_fields()] or list(branches_per_field)
    present = set().union(*(entry.branch_names(spec.tree) for entry in readable))
    missing = [branch for name in fields for branch in branches_per_field[name] if branch not in present]
    if not missing:
        return f"{subject} {fs.collection} branches"
    return f"{subject} {fs.collection} branches (missing {_shortened_names(missing, 4)})"


def _collection_spec(layout: Layout, collection: str) -> CollectionSpec | None:
    """Return the layout's collection that fills the canonical ``collection``, also through a split by PDG id."""
    if collection in layout.collections:
        return layout.collections[collection]
    # A collection split by PDG id fills muons and electrons, as canonical.plan_collection does.
    return next((spec for spec in layout.collections.values() if spec.split_by_pdg_id and collection in ("muons", "electrons")), None)


def _count(number: int, noun: str) -> str:
    """Return ``number`` (with thousands separators) and ``noun`` in the singular or plural."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _shortened_names(names: list[str], limit: int) -> str:
    """Return up to ``limit`` names and the count of the others."""
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f" and {len(names) - limit} more"
    return text


def _raw_branch_quality(dataset: Dataset, max_entries: int = 100_000) -> list[dict[str, Any]]:
    """Count bad values in the readable numeric branches of files that match no layout."""
    rows = []
    unreadable = {(u["file"], u["branch"]) for e in dataset.files for u in e.unreadable}
    for entry in dataset.files:
        if not entry.readable or entry.data_file.format != "root" or entry.main_tree is None or entry.entries == 0:
            continue
        tree = open_root(entry.path)[entry.main_tree]
        if is_rntuple(tree):
            continue
        for branch in tree.itervalues(recursive=True):
            if branch.branches or (str(entry.path), branch.name) in unreadable:
                continue
            interpretation = type(branch.interpretation).__name__
            if interpretation not in ("AsDtype", "AsJagged"):
                continue
            try:
                values = branch.array(entry_stop=min(entry.entries, max_entries), library="ak")
                quality = FieldQuality("branch", branch.name)
                quality.update(values)
            except Exception as error:  # noqa: BLE001 - a branch that fails here is reported, not fatal
                rows.append({"file": str(entry.path), "branch": branch.name, "error": f"{type(error).__name__}: {error}"})
                continue
            row = quality.to_dict()
            row.update({"file": str(entry.path), "branch": branch.name})
            if row["nan"] or row["inf"] or row["sentinel"] or row["null"]:
                rows.append(row)
            else:
                rows.append({"file": str(entry.path), "branch": branch.name, "n": row["n"], "clean": True})
    return rows


def np_json_default(value: Any) -> Any:
    """``json.dumps`` default for numpy scalars."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
