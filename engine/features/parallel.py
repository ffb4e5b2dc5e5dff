"""Feature extraction with the reading and selection run as a Dask graph.

Each TTree file is read through ``uproot.dask`` in steps of entries, and each
step is turned into canonical events and its feature block on a worker. The
client concatenates the blocks in step and file order, so that the result equals
the serial ``load_features``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from cmsgen.engine.canonical import CanonicalChunk
from cmsgen.engine.errors import CmsgenError
from cmsgen.engine.features.sets import FeatureSet
from cmsgen.engine.sources import Dataset, FileEntry
from cmsgen.engine.sources.partitions import ChunkResult, require_dask, root_file_tasks, shippable

log = logging.getLogger(__name__)


def extract_chunks_dask(
    dataset: Dataset,
    fs: FeatureSet,
    step_size: int,
    deduplicate: bool,
    client: Any,
    progress: Callable[[float, str], None] | None = None,
) -> list[ChunkResult]:
    """Return one ChunkResult per step of each readable file, in file and step order, computed on ``client``.

    Each value is what ``extract_block`` returns for the step: the feature block of
    the selected events and their (run, event) pairs, or None for the pairs. A file
    whose reading fails ends with a ChunkResult whose ``error`` is the serial read's message.
    ``progress`` is called with the fraction of entries read and a message as tasks finish.
    """
    require_dask()
    import dask
    from distributed import as_completed

    extract = functools.partial(_extract_chunk, fs=fs, deduplicate=deduplicate)
    tasks: list[Any] = []
    whole_file: list[bool] = []
    sizes: list[int] = []
    for entry in dataset.readable_files:
        file_tasks = root_file_tasks(entry, step_size, extract)
        if file_tasks is None:
            # uproot.dask cannot express this read (CSV, Parquet, RNTuple, EDM), so one task reads the whole file.
            one_file, shipped = shippable(dataset, entry)
            tasks.append(dask.delayed(_extract_file)(one_file, shipped, step_size, extract))
            whole_file.append(True)
            sizes.append(entry.entries)
        else:
            tasks.extend(file_tasks.tasks)
            whole_file.extend(False for _ in file_tasks.tasks)
            sizes.extend(stop - start for start, stop in file_tasks.steps)
    log.info("extracting %s features from %d files in %d tasks on %s", fs.name, len(dataset.readable_files), len(tasks), client)
    futures = client.compute(tasks)
    if progress:
        size_of = {future.key: size for future, size in zip(futures, sizes)}
        total = max(sum(sizes), 1)
        read = 0
        for future in as_completed(futures):
            read += size_of[future.key]
            progress(min(read / total, 1.0), f"read {read:,} of {total:,} entries on Dask")
    computed = client.gather(futures)
    results: list[ChunkResult] = []
    for result, is_whole_file in zip(computed, whole_file):
        if is_whole_file:
            results.extend(result)
        else:
            results.append(result)
    return results


def _extract_chunk(chunk: CanonicalChunk, fs: FeatureSet, deduplicate: bool) -> tuple[np.ndarray, np.ndarray | None]:
    from cmsgen.engine.features import extract_block

    return extract_block(chunk.events, fs, deduplicate)


def _extract_file(dataset: Dataset, entry: FileEntry, step_size: int, extract: Any) -> list[ChunkResult]:
    """Read one file chunk by chunk with ``Dataset.iterate_file``. A failure ends the list with its message."""
    results = []
    try:
        for chunk in dataset.iterate_file(entry, step_size):
            results.append(ChunkResult(extract(chunk), len(chunk.events)))
    except CmsgenError as error:
        results.append(ChunkResult(None, 0, error.message))
    return results


__all__ = ["extract_chunks_dask"]
