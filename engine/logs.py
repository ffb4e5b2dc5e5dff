"""Log-file set-up shared by the CLI and the TUI.

Tracebacks and progress go to a log file; the terminal only shows one-line
messages. The log directory is ``$CMSGEN_LOG_DIR`` or the user's cache
directory (``$XDG_CACHE_HOME/cmsgen-tui``, falling back to ``~/.cache``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s"


def cache_dir() -> Path:
    """Return the per-user cache directory of cmsgen-tui (created on demand)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cmsgen-tui"


def log_path() -> Path:
    """Return the path of the log file."""
    directory = os.environ.get("CMSGEN_LOG_DIR")
    return (Path(directory) if directory else cache_dir()) / "cmsgen.log"


def setup_file_logging(level: int = logging.INFO) -> Path | None:
    """Attach a file handler to the root logger; return the file path, or None if unwritable."""
    path = log_path()
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path.resolve():
            return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(min(root.level, level) if root.level else level)
    return path
