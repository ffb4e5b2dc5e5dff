"""CSV files of the CMS education format, with their header quirks cleaned.

Headers seen in the wild carry a byte-order mark, spaces around names,
trailing delimiters (empty column names) and ``;;;`` tails left by
spreadsheet exports. Each fix is recorded, so the report lists what was
cleaned.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cmsgen.engine.errors import UnreadableFileError

BOM = "\ufeff"


@dataclass
class CsvHeader:
    """The cleaned header of a CSV file and the notes on what was fixed."""

    delimiter: str
    raw_names: list[str]
    names: list[str]
    keep: list[int]
    cleaning: list[str] = field(default_factory=list)
    strip_tail: str = ""


def _read_first_line(path: Path) -> str:
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
    line = head.split(b"\n", 1)[0]
    if b"\x00" in head:
        raise UnreadableFileError(f"The file {path} is binary, not a CSV text file; check that it was not renamed.")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("latin-1")
        if sum(not (char.isprintable() or char in "\r\t") for char in text) > len(text) // 20:
            raise UnreadableFileError(f"The file {path} is not a CSV text file (its header is not text); check that it was not renamed.") from None
        return text


def read_header(path: Path) -> CsvHeader:
    """Read and clean the header line of a CSV file."""
    line = _read_first_line(path)
    if not line.strip():
        raise UnreadableFileError(f"The CSV file {path} is empty or has an empty header line; pass a CSV with a header row.")
    cleaning: list[str] = []

    if line.startswith(BOM):
        line = line[len(BOM):]
        cleaning.append("removed a UTF-8 byte-order mark from the header")
    line = line.rstrip("\r\n")
    delimiter = "," if line.count(",") >= line.count(";") else ";"
    strip_tail = ""
    if delimiter == "," and line.rstrip().endswith(";"):
        stripped = line.rstrip().rstrip(";")
        cleaning.append(f"removed a trailing '{line.rstrip()[len(stripped):]}' tail from the header and the rows")
        strip_tail = ";"
        line = stripped

    raw_names = line.split(delimiter)
    names: list[str] = []
    keep: list[int] = []
    stripped_names = 0
    empty = 0
    for index, name in enumerate(raw_names):
        clean = name.strip().strip('"').strip()
        if clean != name:
            stripped_names += 1
        if not clean:
            empty += 1
            continue
        names.append(clean)
        keep.append(index)
    if stripped_names:
        cleaning.append(f"stripped spaces or quotes around {stripped_names} column names")
    if empty:
        cleaning.append(f"dropped {empty} empty column(s) left by trailing delimiters")

    if not names:
        raise UnreadableFileError(f"The CSV file {path} has no column names in its header; add a header row.")
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise UnreadableFileError(
            f"The CSV file {path} repeats the column name {sorted(duplicates)[0]!r}; rename the duplicate columns."
        )
    return CsvHeader(delimiter, raw_names, names, keep, cleaning, strip_tail)


def count_rows(path: Path) -> int:
    """Count the data rows of a CSV file (lines after the header that are not blank)."""
    rows = 0
    with open(path, "rb") as stream:
        stream.readline()
        for block in iter(lambda: stream.read(1 << 24), b""):
            rows += block.count(b"\n")
        # A last line without a newline is a row too.
        stream.seek(0, io.SEEK_END)
        size = stream.tell()
        if size:
            stream.seek(size - 1)
            if stream.read(1) != b"\n":
                rows += 1
    return rows


def _to_numeric(column: pa.ChunkedArray | pa.Array, strip: str) -> np.ndarray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if strip:
            column = pc.utf8_rtrim(column, characters=strip)
        column = pc.utf8_trim_whitespace(column)
        try:
            column = pc.cast(column, pa.float64())
        except pa.ArrowInvalid:
            return ak.to_numpy(ak.from_arrow(column))  # stays a string column
    array = ak.from_arrow(column)
    array = ak.fill_none(array, np.nan) if ak.any(ak.is_none(array)) else array
    return ak.to_numpy(array)


def iterate_csv(path: Path, header: CsvHeader, columns: list[str] | None, step_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yield blocks of about ``step_size`` rows as a dict of numpy columns."""
    include = columns if columns is not None else header.names
    missing = [c for c in include if c not in header.names]
    if missing:
        raise UnreadableFileError(f"The CSV file {path} has no column {missing[0]!r}.")
    # Columns dropped from the header (empty names) still need a unique name for the parser.
    column_names = [header.names[header.keep.index(i)] if i in header.keep else f"__drop{i}" for i in range(len(header.raw_names))]
    # Read the last column as text when a ';;;' tail must be stripped from it.
    types = {column_names[-1]: pa.string()} if header.strip_tail else {}
    read_options = pacsv.ReadOptions(column_names=column_names, skip_rows=1, block_size=max(1 << 20, step_size * 120))
    parse_options = pacsv.ParseOptions(delimiter=header.delimiter)
    convert_options = pacsv.ConvertOptions(include_columns=include, column_types=types, strings_can_be_null=True)
    try:
        reader = pacsv.open_csv(path, read_options=read_options, parse_options=parse_options, convert_options=convert_options)
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in reader:
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= step_size:
                yield _batches_to_columns(pending, include, header.strip_tail)
                pending, pending_rows = [], 0
        if pending:
            yield _batches_to_columns(pending, include, header.strip_tail)
    except pa.ArrowInvalid as error:
        raise UnreadableFileError(f"The CSV file {path} cannot be parsed ({error}); check its delimiter and row lengths.") from None


def _batches_to_columns(batches: list[pa.RecordBatch], include: list[str], strip: str) -> dict[str, np.ndarray]:
    table = pa.Table.from_batches(batches)
    return {name: _to_numeric(table.column(name).combine_chunks(), strip) for name in include}
