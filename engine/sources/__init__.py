"""Sources: files, globs and directories opened as datasets of canonical events."""

from cmsgen.engine.sources.dataset import DEFAULT_STEP_SIZE, Dataset, FileEntry, open_dataset
from cmsgen.engine.sources.discovery import DataFile, discover_files

__all__ = ["DEFAULT_STEP_SIZE", "DataFile", "Dataset", "FileEntry", "discover_files", "open_dataset"]
