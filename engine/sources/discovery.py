"""Turn user paths (files, globs, directories) into a list of data files."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from cmsgen.engine.errors import DataNotFoundError

FORMATS_BY_SUFFIX = {".root": "root", ".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset and its format (``root``, ``csv`` or ``parquet``)."""

    path: Path
    format: str


def file_format(path: Path) -> str | None:
    """Return the format named by the file's suffix, or None for other files."""
    return FORMATS_BY_SUFFIX.get(path.suffix.lower())


def discover_files(paths: list[str | Path] | tuple[str | Path, ...] | str | Path) -> list[DataFile]:
    """Expand files, globs and directories (searched recursively) into data files, sorted by path.

    Raises DataNotFoundError when a path does not exist or when nothing with a
    known suffix (.root, .csv, .parquet) is found.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise DataNotFoundError("No input given; pass one or more files, directories or globs.")
    found: dict[Path, DataFile] = {}
    for raw in paths:
        text = str(raw)
        path = Path(text).expanduser()
        if any(char in text for char in "*?[") and not path.exists():
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            files = [m for m in matches if m.is_file() and file_format(m)]
            if not files:
                raise DataNotFoundError(f"The pattern {text} matches no .root, .csv or .parquet file; check the pattern.")
            for match in files:
                found[match] = DataFile(match, file_format(match) or "root")
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and file_format(p))
            if not files:
                raise DataNotFoundError(
                    f"The directory {path} contains no .root, .csv or .parquet file; pass a directory with data files."
                )
            for file in files:
                found[file] = DataFile(file, file_format(file) or "root")
        elif path.is_file():
            found[path] = DataFile(path, file_format(path) or "root")
        else:
            raise DataNotFoundError(f"The path {text} does not exist; check the spelling or pass an existing file.")
    return sorted(found.values(), key=lambda f: str(f.path))
