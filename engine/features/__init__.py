"""Feature sets (event selection and training matrices) and their loading from datasets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from cmsgen.engine.errors import NoEventsError, UnreadableFileError
from cmsgen.engine.features.sets import FEATURE_SET_NAMES, FeatureSet, get_feature_set

if TYPE_CHECKING:
    from cmsgen.engine.layouts.registry import Layout

log = logging.getLogger(__name__)


@dataclass
class FeatureTable:
    """The feature matrix of a dataset for one feature set.

    ``values`` is float64 [n_events, len(columns)] in physical units (GeV, radians).
    """

    values: np.ndarray
    feature_set: FeatureSet
    n_read: int
    layout: str
    files: list[str]
    n_duplicates_dropped: int = 0

    @property
    def columns(self) -> tuple[str, ...]:
        return self.feature_set.columns

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.feature_set.kinds


def load_features(
    paths: list[str | Path] | tuple[str | Path, ...] | str | Path,
    feature_set: str | FeatureSet,
    options: dict[str, Any] | None = None,
    max_events: int | None = None,
    layout: str | Layout | None = None,
    step_size: int = 200_000,
    deduplicate: bool = True,
    dask: Any = None,
    progress: Callable[[float, str], None] | None = None,
    layout_files: tuple[str | Path, ...] = (),
) -> FeatureTable:
    """Read a dataset chunk by chunk and return the feature matrix of the selected events.

    With ``deduplicate``, a selected event whose (run, event) pair repeats an
    earlier one is dropped, and the first is kept. Legacy files such as the
    2010 dimuon ntuple list the same event in several rows, and those copies
    would leak between training and test splits. Layouts without run and event
    numbers are not deduplicated. Raises NoEventsError when no event passes
    the selection.

    ``dask`` runs the reading and selection as a Dask graph: a ``distributed.Client``,
    ``"local"`` for a new local cluster of two workers, or a scheduler address such as
    ``tcp://host:8786``. The result equals the serial one (same rows, order and
    ``n_read``), but every file is read in full even when ``max_events`` is reached early.
    ``progress`` is called with the fraction of entries read and a message as reading goes on.
    ``layout`` forces a layout by name or object; ``layout_files`` are layout TOML files that
    detection considers with the known layouts.
    """
    from cmsgen.engine.sources import open_dataset

    fs = feature_set if isinstance(feature_set, FeatureSet) else get_feature_set(feature_set, **(options or {}))
    dataset = open_dataset(paths, layout=layout, layout_files=layout_files)
    if dask is not None and dataset.layout is not None:
        chunks = _dask_chunks(dataset, fs, step_size, deduplicate, dask, progress)
    else:
        chunks = _serial_chunks(dataset, fs, step_size, deduplicate, progress)
    blocks = []
    keys: list[np.ndarray] = []
    n_read = 0
    selected = 0
    for n_events, block, chunk_keys in chunks:
        n_read += n_events
        if chunk_keys is not None:
            keys.append(chunk_keys)
        blocks.append(block)
        selected += len(block)
        # Without deduplication the first max_events selected events are final, so reading can stop.
        if max_events is not None and selected >= max_events and not keys:
            break
    values = np.concatenate(blocks) if blocks else np.zeros((0, len(fs.columns)))
    n_dropped = 0
    if keys and len(values):
        pairs = np.concatenate(keys)
        _, first = np.unique(pairs, axis=0, return_index=True)
        first.sort()
        n_dropped = len(values) - len(first)
        values = values[first]
        if n_dropped:
            log.warning("dropped %d selected events whose (run, event) repeats an earlier row", n_dropped)
    if max_events is not None:
        values = values[:max_events]
    files = [str(f.path) for f in dataset.readable_files]
    if len(values) == 0:
        raise NoEventsError(
            f"No event of {', '.join(files) or 'the dataset'} passes the {fs.name} selection "
            f"({fs.selection_text()}); check the data with `cmsgen-tui report`."
        )
    log.info("loaded %d %s events out of %d read from %d files", len(values), fs.name, n_read, len(files))
    return FeatureTable(values, fs, n_read, dataset.layout.name if dataset.layout else "", files, n_dropped)


def extract_block(events: ak.Array, fs: FeatureSet, deduplicate: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the feature block of one chunk of events, and the (run, event) pairs of its selected events.

    The pairs are int64 [n_selected, 2], or None without ``deduplicate`` or when the
    layout has no run and event numbers.
    """
    block, mask = fs.extract_with_mask(events)
    if not (deduplicate and "run" in events.fields and "event" in events.fields):
        return block, None
    runs = np.asarray(ak.to_numpy(events.run[mask]), dtype=np.int64)
    numbers = np.asarray(ak.to_numpy(events.event[mask]), dtype=np.int64)
    return block, np.stack([runs, numbers], axis=1)


def _serial_chunks(
    dataset: Any, fs: FeatureSet, step_size: int, deduplicate: bool, progress: Callable[[float, str], None] | None
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    total = max(dataset.n_entries, 1)
    read = 0
    for events in dataset.iterate_events(step_size=step_size):
        read += len(events)
        if progress:
            progress(min(read / total, 1.0), f"read {read:,} of {total:,} entries")
        yield (len(events), *extract_block(events, fs, deduplicate))


def _dask_chunks(
    dataset: Any, fs: FeatureSet, step_size: int, deduplicate: bool, dask: Any, progress: Callable[[float, str], None] | None
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    from cmsgen.engine.features.parallel import extract_chunks_dask
    from cmsgen.engine.sources.partitions import dask_client

    if isinstance(dask, str):
        with dask_client(dask) as client:
            results = extract_chunks_dask(dataset, fs, step_size, deduplicate, client, progress)
    else:
        results = extract_chunks_dask(dataset, fs, step_size, deduplicate, dask, progress)
    for result in results:
        if result.error is not None:
            # The serial read raises here too, at the first step that fails.
            raise UnreadableFileError(result.error)
        block, keys = result.value
        yield result.n_events, block, keys


__all__ = ["FEATURE_SET_NAMES", "FeatureSet", "FeatureTable", "extract_block", "get_feature_set", "load_features"]
