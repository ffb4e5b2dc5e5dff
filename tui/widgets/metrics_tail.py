"""Follow a run directory's ``metrics.jsonl`` and ``status.json`` without rereading them.

``MetricsTail`` reads only the bytes appended since the previous call, so a
run with millions of logged steps costs the app nothing per poll beyond the new
lines. It has no Textual dependency: the run monitor calls it from a thread
worker and posts the rows to the UI thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"

# Upper bound on the bytes one call reads, so that attaching to a long run fills
# the panels in several quick batches instead of one long pause.
DEFAULT_READ_BYTES = 4 * 1024 * 1024


class MetricsTail:
    """Incremental reader of one ``metrics.jsonl`` file, which remembers its byte offset.

    A line without its final newline is kept back until the writer finishes it.
    When the file shrinks (rewritten by a restarted run), reading starts again
    from the beginning.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self.invalid_lines = 0

    def read_new(self, max_bytes: int = DEFAULT_READ_BYTES) -> list[dict[str, Any]]:
        """Return the rows appended since the previous call (an empty list when none)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            log.info("%s shrank from %d to %d bytes; reading it again from the start", self.path, self.offset, size)
            self.offset = 0
            self._partial = b""
        if size == self.offset:
            return []

        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read(max_bytes)
        self.offset += len(data)

        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        return list(self._parse(lines))

    @property
    def at_end(self) -> bool:
        """Whether the last read reached the current end of the file."""
        try:
            return self.path.stat().st_size <= self.offset
        except FileNotFoundError:
            return True

    def _parse(self, lines: list[bytes]) -> Iterator[dict[str, Any]]:
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                self.invalid_lines += 1
                if self.invalid_lines <= 3:
                    log.warning("skipping an invalid line of %s: %r", self.path, line[:200])
                continue
            if isinstance(row, dict):
                yield row


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """Return the parsed ``status.json`` of a run directory, or None when it is missing or unreadable.

    The trainer writes the file atomically, so a partial file comes from a writer
    that breaks this contract. Such a file is logged and treated as missing.
    """
    path = Path(run_dir) / STATUS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        log.warning("cannot read %s: %s", path, error)
        return None
    try:
        status = json.loads(text)
    except json.JSONDecodeError as error:
        log.warning("invalid JSON in %s: %s", path, error)
        return None
    return status if isinstance(status, dict) else None


def find_run_dirs(runs_dir: Path) -> list[Path]:
    """Return the run directories under ``runs_dir`` (those with a ``status.json``), sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(path.parent for path in runs_dir.glob(f"*/{STATUS_FILE}"))


def model_label(status: dict[str, Any]) -> str:
    """Return the model family of a run, with its number of ranks when it trained on several."""
    model = str(status.get("model") or "-")
    world_size = status.get("world_size")
    if isinstance(world_size, int) and world_size > 1:
        return f"{model} x{world_size}"
    return model
