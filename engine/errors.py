"""Errors that the engine raises for bad input, with the exit code the CLI uses.

Every error carries one plain sentence that names the value at fault and what
to do about it. The CLI prints that sentence and exits with ``exit_code``; the
traceback goes to the log file only.
"""

from __future__ import annotations

# Exit codes of every command, documented in ``cmsgen-tui --help``.
EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected internal error; details are in the log file
EXIT_USAGE = 2  # bad command-line usage (typer/click's own code)
EXIT_NOT_FOUND = 3  # a path that does not exist, or a directory with no data files
EXIT_UNREADABLE = 4  # a file that is not ROOT/CSV/Parquet, truncated, or has nothing readable
EXIT_CONFIG = 5  # an invalid config file or option value
EXIT_RUN_FAILED = 6  # a training run that failed (non-finite loss, write error)
EXIT_NO_DATA = 7  # data were read but nothing usable is left (no events after selection)
EXIT_INTERRUPTED = 130  # stopped by SIGINT or SIGTERM after saving state

EXIT_CODES_HELP = """Exit codes:
  0  success
  1  unexpected internal error (see the log file)
  2  invalid command-line usage
  3  a path does not exist, or a directory contains no data files
  4  a file cannot be read (not ROOT/CSV/Parquet, truncated, no trees)
  5  invalid config file or option value
  6  a training run failed (non-finite loss, write error)
  7  no usable events (empty trees, nothing left after selection)
  130 stopped by SIGINT/SIGTERM after saving a checkpoint"""


class CmsgenError(Exception):
    """An error caused by the user's input, with a one-sentence message and an exit code."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(CmsgenError):
    """A path that does not exist, or a directory or glob with no data files."""

    exit_code = EXIT_NOT_FOUND


class UnreadableFileError(CmsgenError):
    """A file that cannot be opened or decoded."""

    exit_code = EXIT_UNREADABLE


class ConfigError(CmsgenError):
    """An invalid configuration key, type or value."""

    exit_code = EXIT_CONFIG


class NoEventsError(CmsgenError):
    """Data were read, but no events are usable for the requested task."""

    exit_code = EXIT_NO_DATA


class RunFailedError(CmsgenError):
    """A training run that stopped because of a failure."""

    exit_code = EXIT_RUN_FAILED
