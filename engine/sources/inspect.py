"""Structure of data files: ROOT directories, TTrees and RNTuples, CSV and Parquet tables.

``inspect_file`` lists what a file contains without reading its data. For each
TTree branch it records the type, sizes, compression and whether uproot can read
it. Readability is judged from the branch's uproot interpretation. For object
branches (``AsObjects``, ``AsStridedObjects``) the interpretation alone cannot
tell, so those branches also get a read of the first entry, which reads the
first basket. A file that cannot be opened is returned with ``error`` set, so a
dataset of many files is inspected even when some are broken.

The compression of a TTree branch comes from the branch's ``fCompress`` setting,
as written by ROOT. RNTuple pages carry their own ``compression_settings``, and
Parquet columns take theirs from the row-group metadata. CSV files are not compressed.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from cmsgen.engine.errors import DataNotFoundError, UnreadableFileError
from cmsgen.engine.sources.rootfile import SIMPLE_INTERPRETATIONS, damaged_rntuple_page, describe_read_error, is_rntuple, open_root

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".root", ".csv", ".parquet")

# ROOT compression algorithm codes (fCompress // 100), from ROOT's Compression.h.
ROOT_ALGORITHMS = {1: "ZLIB", 2: "LZMA", 3: "deflate (old)", 4: "LZ4", 5: "ZSTD"}


@dataclass
class BranchStructure:
    """One TTree branch or RNTuple field, with its sub-branches.

    Sizes are in bytes and include sub-branches, or are ``None`` where the
    format does not expose them. ``readable`` is False, with a ``reason``, for
    a branch that uproot cannot deserialise. A split parent without data of
    its own is readable when all its sub-branches are.
    """

    name: str
    path: str  # full path inside the tree, sub-branches joined by "/"
    type: str
    compressed_bytes: int | None
    uncompressed_bytes: int | None
    compression: str | None
    readable: bool
    reason: str | None
    leaf: bool
    interpretation: str | None = None
    children: list[BranchStructure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "type": self.type,
            "compressed_bytes": self.compressed_bytes,
            "uncompressed_bytes": self.uncompressed_bytes,
            "compression": self.compression,
            "readable": self.readable,
            "reason": self.reason,
            "leaf": self.leaf,
            "interpretation": self.interpretation,
            "children": [child.to_dict() for child in self.children],
        }

    def walk(self) -> Iterator[BranchStructure]:
        """Yield this branch and every sub-branch, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class ObjectStructure:
    """Directory, TTree, RNTuple or table inside a file.

    ``entries`` is None for a directory and for a TTree or RNTuple whose header cannot be read.
    """

    path: str
    kind: str  # "directory" | "tree" | "rntuple" | "table"
    entries: int | None
    branches: list[BranchStructure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "entries": self.entries,
            "branches": [branch.to_dict() for branch in self.branches],
            "notes": list(self.notes),
        }

    def all_branches(self) -> Iterator[BranchStructure]:
        """Yield every branch of the object, sub-branches included."""
        for branch in self.branches:
            yield from branch.walk()


@dataclass
class FileStructure:
    """Structure of one file: its objects, or the reason it cannot be opened (``error``)."""

    path: str
    format: str  # "root" | "csv" | "parquet"
    size_bytes: int
    error: str | None = None
    objects: list[ObjectStructure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "error": self.error,
            "objects": [item.to_dict() for item in self.objects],
        }

    @property
    def data_objects(self) -> list[ObjectStructure]:
        """Trees, RNTuples and tables, without directories."""
        return [item for item in self.objects if item.kind != "directory"]

    def find(self, object_path: str) -> ObjectStructure:
        """Return the object at ``object_path``, or raise ``KeyError`` when there is none."""
        for item in self.objects:
            if item.path == object_path:
                return item
        raise KeyError(object_path)


# ---------------------------------------------------------------- paths


def _format_of(path: Path) -> str:
    """Return the format of a file from its suffix. Any suffix but .csv and .parquet is read as ROOT."""
    suffix = path.suffix.lower()
    return {".root": "root", ".csv": "csv", ".parquet": "parquet"}.get(suffix, "root")


def expand_paths(path: str | Path) -> list[Path]:
    """Expand a file, a glob or a directory (walked recursively) into data files, sorted.

    Raise ``DataNotFoundError`` for a path that does not exist, a glob that
    matches nothing, or a directory without .root, .csv or .parquet files.
    """
    text = str(path)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return [candidate]
    if candidate.is_dir():
        found = sorted(
            Path(folder) / name
            for folder, _, names in os.walk(candidate)
            for name in names
            if name.lower().endswith(DATA_SUFFIXES)
        )
        if not found:
            raise DataNotFoundError(
                f"The directory {candidate} contains no .root, .csv or .parquet files; give a folder with data files."
            )
        return found
    if glob.has_magic(text):
        matches = sorted(Path(item) for item in glob.glob(os.path.expanduser(text), recursive=True) if Path(item).is_file())
        if not matches:
            raise DataNotFoundError(f"The pattern {text} matches no files; check the pattern and the folder.")
        return matches
    raise DataNotFoundError(f"The path {text} does not exist; check the spelling or give the full path.")


def inspect_path(path: str | Path) -> list[FileStructure]:
    """Inspect a file, every file matching a glob, or every data file under a directory."""
    return [inspect_file(item) for item in expand_paths(path)]


def inspect_file(path: str | Path) -> FileStructure:
    """Inspect one file and return its structure.

    A file that cannot be opened is returned with ``error`` set instead of raising.
    Raise ``DataNotFoundError`` only when ``path`` does not exist.
    """
    file_path = Path(path).expanduser()
    if not file_path.is_file():
        raise DataNotFoundError(f"The file {file_path} does not exist; check the spelling or give the full path.")
    structure = FileStructure(path=str(file_path), format=_format_of(file_path), size_bytes=file_path.stat().st_size)
    log.info("inspecting %s (%s, %d bytes)", file_path, structure.format, structure.size_bytes)

    if structure.format == "csv":
        _inspect_csv(file_path, structure)
    elif structure.format == "parquet":
        _inspect_parquet(file_path, structure)
    else:
        _inspect_root(file_path, structure)
    if structure.error:
        log.warning("cannot inspect %s: %s", file_path, structure.error)
    return structure


# ---------------------------------------------------------------- ROOT files


def _open_root(path: Path) -> uproot.ReadOnlyDirectory:
    """Open a ROOT file with memory mapping, or raise ``UnreadableFileError`` with a one-sentence reason.

    The reasons are those of the dataset reader (``rootfile.open_root``), so the
    Files screen and the report name the same cause, such as a file that does not
    start with the bytes 'root'.
    """
    return open_root(path)


def _inspect_root(path: Path, structure: FileStructure) -> None:
    """Add the directories, TTrees and RNTuples of a ROOT file to ``structure``, or set its ``error``."""
    try:
        handle = _open_root(path)
    except UnreadableFileError as error:
        structure.error = error.message
        return

    with handle:
        try:
            classnames = handle.classnames(recursive=True)
        except Exception as error:  # noqa: BLE001 - a damaged directory raises from deep in uproot
            log.debug("listing keys of %s failed", path, exc_info=True)
            structure.error = (
                f"The file {path} has a damaged directory ({type(error).__name__}: {error}); "
                "it may be truncated, so copy it again from its source."
            )
            return

        file_compression = _compression_name(handle.file.fCompress) if hasattr(handle.file, "fCompress") else None
        for key, classname in classnames.items():
            object_path = key.rsplit(";", 1)[0]
            if classname in ("TDirectory", "TDirectoryFile"):
                structure.objects.append(ObjectStructure(object_path, "directory", None))
            elif classname == "TTree":
                structure.objects.append(_inspect_tree(path, handle, key, object_path, file_compression))
            elif classname.startswith("ROOT::RNTuple") or classname == "ROOT::Experimental::RNTuple":
                structure.objects.append(_inspect_rntuple(path, handle, key, object_path))

    if not structure.data_objects:
        kinds = sorted(set(classnames.values()))
        listed = ", ".join(kinds[:5]) if kinds else "nothing"
        structure.error = (
            f"The file {path} contains no TTree or RNTuple (it has {listed}); "
            "give a file with event data, such as a NanoAOD or ntuple file."
        )


def _compression_name(code: int | None) -> str | None:
    """Decode a ROOT ``fCompress`` code (100 * algorithm + level) into "ZLIB(4)" style text."""
    if code is None or code < 0:
        return None
    algorithm, level = divmod(int(code), 100)
    if level == 0:
        return "none"
    # Algorithm 0 is ROOT's global default, which is ZLIB in every ROOT release that wrote such files.
    return f"{ROOT_ALGORITHMS.get(algorithm or 1, f'algorithm {algorithm}')}({level})"


def _inspect_tree(path: Path, handle: uproot.ReadOnlyDirectory, key: str, object_path: str, file_compression: str | None) -> ObjectStructure:
    """Describe one TTree and its branches. A damaged TTree header becomes a note, not an error."""
    try:
        tree = handle[key]
        entries = int(tree.num_entries)
    except Exception as error:  # noqa: BLE001 - a damaged TTree header raises many types
        log.debug("reading TTree %s of %s failed", key, path, exc_info=True)
        return ObjectStructure(object_path, "tree", None, notes=[f"the TTree cannot be read ({type(error).__name__}: {error})"])

    structure = ObjectStructure(object_path, "tree", entries)
    structure.branches = [_inspect_branch(branch, branch.name, file_compression, entries) for branch in tree.branches]
    if entries == 0:
        structure.notes.append("the TTree has 0 entries")
    return structure


def _interpretation_verdict(branch: Any) -> tuple[Any, str | None, bool]:
    """Return (interpretation or None, reason it is unreadable or None, whether a probe read is needed)."""
    try:
        interpretation = branch.interpretation
    except Exception as error:  # noqa: BLE001 - building an interpretation may fail on odd streamers
        return None, f"uproot cannot interpret the branch ({type(error).__name__}: {error})", False

    if isinstance(interpretation, uproot.interpretation.identify.UnknownInterpretation):
        reason = getattr(interpretation, "reason", None) or "unknown"
        return interpretation, f"uproot has no interpretation for type {branch.typename!r} ({reason})", False
    if isinstance(interpretation, uproot.interpretation.objects.AsObjects):
        model = interpretation.model
        if isinstance(model, type) and issubclass(model, uproot.model.UnknownClass):
            return interpretation, f"class {branch.typename!r} is unknown to uproot (no streamer in the file)", False
        return interpretation, None, True
    if isinstance(interpretation, uproot.interpretation.objects.AsStridedObjects):
        return interpretation, None, True
    return interpretation, None, False


def _probe_first_entry(branch: Any, entries: int) -> str | None:
    """Read the first entry of an object branch and return the failure reason, or None when the read succeeds.

    A branch without entries or baskets is not read and also returns None.
    """
    if entries == 0 or branch.num_baskets == 0:
        return None
    try:
        branch.array(entry_start=0, entry_stop=1, library="ak")
    except Exception as error:  # noqa: BLE001 - uproot's deserialisers raise many types
        return f"reading the first entry fails ({describe_read_error(error)})"
    return None


def _inspect_branch(branch: Any, path: str, file_compression: str | None, entries: int) -> BranchStructure:
    """Describe a TTree branch and its sub-branches, and judge whether it can be read."""
    children = [_inspect_branch(child, f"{path}/{child.name}", file_compression, entries) for child in branch.branches]
    interpretation, reason, needs_probe = _interpretation_verdict(branch)

    if isinstance(interpretation, uproot.interpretation.grouped.AsGrouped):
        # A split parent has no data of its own: it reads when all its sub-branches read.
        broken = [leaf.path for child in children for leaf in child.walk() if not leaf.readable and not leaf.children]
        reason = f"{len(broken)} sub-branch(es) cannot be read, for example {broken[0]}" if broken else None
    elif reason is None and needs_probe:
        reason = _probe_first_entry(branch, entries)

    try:
        compression_code = branch.member("fCompress")
    except KeyError:
        compression_code = None
    compression = _compression_name(compression_code) or file_compression

    return BranchStructure(
        name=branch.name,
        path=path,
        type=branch.typename,
        compressed_bytes=int(branch.compressed_bytes),
        uncompressed_bytes=int(branch.uncompressed_bytes),
        compression=compression,
        readable=reason is None,
        reason=reason,
        leaf=not children,
        interpretation=None if interpretation is None else _short_interpretation(interpretation),
        children=children,
    )


def _short_interpretation(interpretation: Any) -> str:
    """Return the interpretation's repr, without the member list of an ``AsGroup``."""
    if isinstance(interpretation, uproot.interpretation.grouped.AsGrouped):
        return f"AsGroup({len(interpretation.subbranches)} sub-branches)"
    return repr(interpretation)


def _inspect_rntuple(path: Path, handle: uproot.ReadOnlyDirectory, key: str, object_path: str) -> ObjectStructure:
    """Describe one RNTuple and its fields. A header that cannot be read becomes a note, not an error."""
    try:
        ntuple = handle[key]
        entries = int(ntuple.num_entries)
    except Exception as error:  # noqa: BLE001 - RNTuple support in uproot is young and raises many types
        log.debug("reading RNTuple %s of %s failed", key, path, exc_info=True)
        return ObjectStructure(object_path, "rntuple", None, notes=[f"the RNTuple cannot be read ({describe_read_error(error)}); the file is damaged: copy it again"])

    sizes = _rntuple_field_sizes(ntuple)
    structure = ObjectStructure(object_path, "rntuple", entries)
    structure.branches = [_inspect_field(item, item.name, sizes) for item in ntuple.fields]
    if entries == 0:
        structure.notes.append("the RNTuple has 0 entries")
    damage = damaged_rntuple_page(ntuple)
    if damage is not None:
        structure.notes.append(f"the RNTuple is damaged: {damage.description}, so its values cannot be trusted. Copy the file again")
        for branch in structure.branches:
            if branch.name == damage.field:
                branch.readable = False
                branch.reason = f"{damage.description}: the file is damaged"
    return structure


def _rntuple_field_sizes(ntuple: Any) -> dict[int, tuple[int, int, str | None]]:
    """Return (compressed bytes, uncompressed bytes, compression) per field id, summed over the pages.

    The sizes come from uproot's page list and column records. Uncompressed bytes
    are the element count times the column's bit width, divided by 8. Sizes of
    sub-fields are added to their parents.
    A projected field (an alias, as in RNTuples converted from NanoAOD) gets the
    sizes of the physical columns it points to, so those bytes count under
    both fields. Returns an empty dict when uproot's RNTuple internals differ
    from uproot 5.7.
    """
    try:
        columns = ntuple.column_records
        parents = {index: record.parent_field_id for index, record in enumerate(ntuple.field_records)}
        column_sizes: dict[int, list[int]] = {}
        column_codes: dict[int, int] = {}
        for cluster in ntuple.page_link_list:
            for column_index, column_pages in enumerate(cluster):
                totals = column_sizes.setdefault(column_index, [0, 0])
                for page in column_pages.pages:
                    totals[0] += int(page.locator.num_bytes)
                    totals[1] += int(page.num_elements) * int(columns[column_index].nbits) // 8
                column_codes[column_index] = int(column_pages.compression_settings)
        owners = [(column.field_id, index) for index, column in enumerate(columns)]
        owners += [(alias.field_id, alias.physical_id) for alias in ntuple.alias_column_records]
    except (AttributeError, IndexError, TypeError) as error:
        log.debug("RNTuple page sizes unavailable: %s", error)
        return {}

    own: dict[int, list[int]] = {}
    codes: dict[int, int] = {}
    for field_id, column_index in owners:
        totals = own.setdefault(field_id, [0, 0])
        totals[0] += column_sizes.get(column_index, [0, 0])[0]
        totals[1] += column_sizes.get(column_index, [0, 0])[1]
        if column_index in column_codes:
            codes[field_id] = column_codes[column_index]

    sizes: dict[int, list[int]] = {}
    for field_id, (compressed, uncompressed) in own.items():
        current = field_id
        while True:
            totals = sizes.setdefault(current, [0, 0])
            totals[0] += compressed
            totals[1] += uncompressed
            parent = parents.get(current, current)
            if parent == current:
                break
            current = parent
    compression = {field_id: _compression_name(code) for field_id, code in codes.items()}
    return {field_id: (values[0], values[1], compression.get(field_id)) for field_id, values in sizes.items()}


def _inspect_field(item: Any, path: str, sizes: dict[int, tuple[int, int, str | None]]) -> BranchStructure:
    """Describe an RNTuple field and its sub-fields, and judge whether uproot can build its type."""
    children = [_inspect_field(child, f"{path}/{child.name}", sizes) for child in item.fields]
    compressed, uncompressed, compression = sizes.get(item.field_id, (None, None, None))
    if compression is None:
        compression = next((child.compression for child in children if child.compression), None)
    broken = [leaf.path for child in children for leaf in child.walk() if not leaf.readable and not leaf.children]
    reason = f"{len(broken)} sub-field(s) cannot be read, for example {broken[0]}" if broken else None
    if not children:
        try:
            item.to_akform()
        except Exception as error:  # noqa: BLE001 - an unsupported RNTuple column type raises many types
            reason = f"uproot cannot build a type for the field ({type(error).__name__}: {error})"
    return BranchStructure(
        name=item.name,
        path=path,
        type=item.typename or "",
        compressed_bytes=compressed,
        uncompressed_bytes=uncompressed,
        compression=compression,
        readable=reason is None,
        reason=reason,
        leaf=not children,
        children=children,
    )


# ---------------------------------------------------------------- branch values


def read_branch_values(path: str | Path, object_path: str, branch: str, max_entries: int = 100_000) -> np.ndarray:
    """Read the numeric values of one branch or field, flattened to 1-D float64.

    Reads at most ``max_entries`` entries (events, not values). Raise
    ``UnreadableFileError`` naming the branch and the reason when it cannot be
    deserialised or contains no numbers, and ``DataNotFoundError`` when the
    object or branch does not exist.
    """
    file_path = Path(path).expanduser()
    if not file_path.is_file():
        raise DataNotFoundError(f"The file {file_path} does not exist; check the spelling or give the full path.")
    if file_path.suffix.lower() in (".csv", ".parquet"):
        return _read_table_column(file_path, branch, max_entries)

    with _open_root(file_path) as handle:
        try:
            container = handle[object_path]
        except KeyError as error:
            raise DataNotFoundError(f"The file {file_path} has no tree or RNTuple {object_path!r}; run inspect to list its objects.") from error
        try:
            target = container[branch]
        except (KeyError, uproot.KeyInFileError) as error:
            raise DataNotFoundError(
                f"The tree {object_path!r} in {file_path} has no branch {branch!r}; run inspect to list its branches."
            ) from error
        damage = damaged_rntuple_page(container) if is_rntuple(container) else None
        if damage is not None:
            raise UnreadableFileError(f"The RNTuple {object_path!r} in {file_path} is damaged: {damage.description}. Copy the file again.")
        try:
            values = target.array(entry_stop=max_entries, library="ak")
        except Exception as error:  # noqa: BLE001 - uproot's deserialisers raise many types
            log.debug("reading %s:%s/%s failed", file_path, object_path, branch, exc_info=True)
            raise UnreadableFileError(_read_failure_message(file_path, object_path, branch, target, error)) from error

    return _flatten_numeric(values, f"The branch {branch!r} of {object_path!r} in {file_path}")


def _read_failure_message(file_path: Path, object_path: str, branch: str, target: Any, error: BaseException) -> str:
    """Return the message of a failed read of ``target``, blaming damage or the type depending on the interpretation.

    uproot reads a branch of a simple interpretation (numbers, jagged numbers,
    strings) without a class dictionary, so a failure there means damaged
    bytes. An RNTuple field has no interpretation, and its type was checked when
    the file was inspected. Object branches fail on damage and on classes that
    uproot cannot deserialise, so both causes are named.
    """
    where = f"The branch {branch!r} of {object_path!r} in {file_path}"
    detail = describe_read_error(error)
    interpretation = getattr(target, "interpretation", None)
    if interpretation is None or type(interpretation).__name__ in SIMPLE_INTERPRETATIONS:
        typename = getattr(target, "typename", None) or "its type"
        return (
            f"{where} cannot be read ({detail}); uproot can read {typename}, so the file may be truncated or damaged: "
            "copy it again from its source."
        )
    if isinstance(interpretation, (uproot.interpretation.objects.AsObjects, uproot.interpretation.objects.AsStridedObjects)):
        return (
            f"{where} cannot be read ({detail}); the file may be damaged, or uproot cannot deserialise "
            f"the class {getattr(target, 'typename', '?')!r}: choose another branch or copy the file again."
        )
    return f"{where} cannot be read ({detail}); choose another branch, because this type needs the software that wrote it."


def _flatten_numeric(values: Any, label: str, noun: str = "branch") -> np.ndarray:
    """Flatten an awkward array of numbers (any nesting) into a 1-D float64 array.

    ``noun`` ("branch" or "column") names the kind of ``label`` in the error messages.
    """
    if ak.fields(values):
        raise UnreadableFileError(f"{label} contains records, not numbers; choose one of its sub-branches for a histogram.")
    try:
        flat = ak.flatten(values, axis=None)
        result = ak.to_numpy(flat).astype(np.float64)
    except (TypeError, ValueError) as error:
        raise UnreadableFileError(f"{label} contains no plain numbers; choose a numeric {noun} for a histogram.") from error
    return result


# ---------------------------------------------------------------- CSV and Parquet tables

CSV_BLOCK_BYTES = 8 << 20  # pyarrow infers column types from the first block of this size


def _csv_header_notes(path: Path) -> tuple[list[str], list[str]]:
    """Read the header line raw and return (column names as written, notes on cleaning them)."""
    with path.open("rb") as handle:
        first_line = handle.readline(1 << 20)
    notes: list[str] = []
    if first_line.startswith(b"\xef\xbb\xbf"):
        notes.append("the header starts with a UTF-8 byte-order mark, which is removed")
        first_line = first_line[3:]
    if first_line.endswith(b"\r\n"):
        notes.append("lines end with CR LF (Windows); the carriage returns are removed")
    names = first_line.decode("utf-8", errors="replace").rstrip("\r\n").split(",")
    padded = [name for name in names if name != name.strip()]
    if padded:
        notes.append(f"{len(padded)} column name(s) have spaces around them, which are removed: {padded[:3]}")
    cleaned = [name.strip() for name in names]
    if "" in cleaned:
        notes.append(f"{cleaned.count('')} column(s) have an empty name (often a trailing comma)")
    duplicates = sorted({name for name in cleaned if name and cleaned.count(name) > 1})
    if duplicates:
        notes.append(f"column names repeat: {duplicates}")
    return names, notes


def _inspect_csv(path: Path, structure: FileStructure) -> None:
    """Add the table of a CSV file, with its column types and header notes, to ``structure``, or set its ``error``."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if structure.size_bytes == 0:
        structure.error = f"The file {path} is empty (0 bytes); copy it again from its source."
        return
    names, notes = _csv_header_notes(path)
    read_options = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    rows = 0
    try:
        reader = pa_csv.open_csv(path, read_options=read_options)
        schema = reader.schema
        for batch in reader:
            rows += batch.num_rows
    except pa.ArrowInvalid as error:
        first_line = str(error).splitlines()[0]
        if rows == 0:
            structure.error = f"The file {path} is not a readable CSV table ({first_line}); give a comma-separated file with a header line."
            return
        # pyarrow infers the column types from the first block only, so a later block that disagrees fails.
        # Count the rows again with every column read as text.
        notes.append(f"column types change after row {rows} ({first_line}); the types shown are from the first block")
        text_types = {name.strip(): pa.string() for name in names}
        try:
            rows = sum(
                batch.num_rows
                for batch in pa_csv.open_csv(path, read_options=read_options, convert_options=pa_csv.ConvertOptions(column_types=text_types))
            )
        except pa.ArrowInvalid as text_error:
            structure.error = (
                f"The file {path} has a malformed row after row {rows} ({str(text_error).splitlines()[0]}); "
                "fix or remove that row."
            )
            return

    table = ObjectStructure(path.name, "table", rows, notes=notes)
    for arrow_field in schema:
        table.branches.append(
            BranchStructure(
                name=arrow_field.name,
                path=arrow_field.name,
                type=str(arrow_field.type),
                compressed_bytes=None,
                uncompressed_bytes=None,
                compression=None,
                readable=True,
                reason=None,
                leaf=True,
            )
        )
    if rows == 0:
        table.notes.append("the table has a header but 0 rows")
    structure.objects.append(table)


def _inspect_parquet(path: Path, structure: FileStructure) -> None:
    """Add the table of a Parquet file, with sizes and codecs per top-level column, to ``structure``, or set its ``error``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        structure.error = f"The file {path} is not a readable Parquet file ({error}); check that it was written completely."
        return

    metadata = parquet.metadata
    totals: dict[str, list[int]] = {}
    codecs: dict[str, str] = {}
    for group_index in range(metadata.num_row_groups):
        group = metadata.row_group(group_index)
        for column_index in range(group.num_columns):
            column = group.column(column_index)
            top = column.path_in_schema.split(".")[0]
            sums = totals.setdefault(top, [0, 0])
            sums[0] += column.total_compressed_size
            sums[1] += column.total_uncompressed_size
            codecs[top] = str(column.compression)

    table = ObjectStructure(path.name, "table", int(metadata.num_rows))
    for arrow_field in parquet.schema_arrow:
        compressed, uncompressed = totals.get(arrow_field.name, (None, None))
        table.branches.append(
            BranchStructure(
                name=arrow_field.name,
                path=arrow_field.name,
                type=str(arrow_field.type),
                compressed_bytes=compressed,
                uncompressed_bytes=uncompressed,
                compression=codecs.get(arrow_field.name),
                readable=True,
                reason=None,
                leaf=True,
            )
        )
    if metadata.num_rows == 0:
        table.notes.append("the table has 0 rows")
    structure.objects.append(table)


def _read_table_column(path: Path, column: str, max_entries: int) -> np.ndarray:
    """Read one numeric column of a CSV or Parquet file, at most ``max_entries`` rows, as float64."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    try:
        if path.suffix.lower() == ".parquet":
            values = ak.from_parquet(path, columns=[column])[column][:max_entries]
        else:
            reader = pa_csv.open_csv(path, convert_options=pa_csv.ConvertOptions(include_columns=[column]))
            batches = []
            rows = 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= max_entries:
                    break
            arrow_table = pa.Table.from_batches(batches, schema=reader.schema)
            values = ak.from_arrow(arrow_table.column(column))[:max_entries]
    except (pa.ArrowInvalid, KeyError, ValueError) as error:
        raise DataNotFoundError(f"The file {path} has no readable column {column!r}; run inspect to list its columns.") from error
    return _flatten_numeric(values, f"The column {column!r} in {path}", noun="column")
