"""Feature sets (event selection and training matrices) and their loading from datasets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from cmsgen.engine.errors import NoEventsError
from cmsgen.engine.features.sets import FEATURE_SET_NAMES, FeatureSet, get_feature_set

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
    layout: str | None = None,
    step_size: int = 200_000,
    deduplicate: bool = True,
) -> FeatureTable:
    """Read a dataset chunk by chunk and return the feature matrix of the selected events.

    With ``deduplicate``, a selected event whose (run, event) pair repeats an
    earlier one is dropped, and the first is kept. Legacy files such as the
    2010 dimuon ntuple list the same event in several rows, and those copies
    would leak between training and test splits. Layouts without run and event
    numbers are not deduplicated. Raises NoEventsError when no event passes
    the selection.
    """
    from cmsgen.engine.sources import open_dataset

    fs = feature_set if isinstance(feature_set, FeatureSet) else get_feature_set(feature_set, **(options or {}))
    dataset = open_dataset(paths, layout=layout)
    blocks = []
    keys: list[np.ndarray] = []
    n_read = 0
    selected = 0
    for events in dataset.iterate_events(step_size=step_size):
        n_read += len(events)
        block, mask = fs.extract_with_mask(events)
        if deduplicate and "run" in events.fields and "event" in events.fields:
            runs = np.asarray(ak.to_numpy(events.run[mask]), dtype=np.int64)
            numbers = np.asarray(ak.to_numpy(events.event[mask]), dtype=np.int64)
            keys.append(np.stack([runs, numbers], axis=1))
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
            f"({fs.n_objects} {fs.collection} with finite {', '.join(fs.fields)}); check the data with `cmsgen-tui report`."
        )
    log.info("loaded %d %s events out of %d read from %d files", len(values), fs.name, n_read, len(files))
    return FeatureTable(values, fs, n_read, dataset.layout.name if dataset.layout else "", files, n_dropped)


__all__ = ["FEATURE_SET_NAMES", "FeatureSet", "FeatureTable", "get_feature_set", "load_features"]
