"""Build the missing-field report with the event pass run as a Dask graph.

The client opens the dataset (discovery, layouts, unreadable files: metadata only).
Only the event pass goes to the cluster: each TTree file is read through
``uproot.dask`` in steps that end at basket boundaries, and each step is counted
into a ``ReportTotals``. The counts do not depend on where the steps end, and the
totals merge in step and file order, so the report equals the serial
``build_report`` to the last count.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmsgen.engine.canonical import CanonicalChunk
from cmsgen.engine.features.sets import FeatureSet
from cmsgen.engine.report.builder import ProgressCallback, Report, ReportTotals, count_file, finish_report, verdict_sets_for
from cmsgen.engine.sources import DEFAULT_STEP_SIZE, Dataset, FileEntry, open_dataset
from cmsgen.engine.sources.partitions import ChunkResult, require_dask, root_file_tasks, shippable, tree_reduce

log = logging.getLogger(__name__)


@dataclass
class ReportGraph:
    """The Dask graph of a report's event pass.

    ``totals`` is a ``dask.delayed`` value that computes the ``ReportTotals`` of the
    whole dataset. ``parts`` lists the tasks that read data, each with the number
    of entries it reads and its file name, so that a caller can show progress.
    """

    totals: Any
    parts: list[tuple[Any, int, str]]


def report_graph(dataset: Dataset, verdict_sets: list[FeatureSet], step_size: int = DEFAULT_STEP_SIZE) -> ReportGraph:
    """Build the graph that counts the readable files of ``dataset`` into one ``ReportTotals``."""
    require_dask()
    import dask

    count = functools.partial(_count_chunk, verdict_sets=verdict_sets)
    file_totals = []
    parts: list[tuple[Any, int, str]] = []
    for entry in dataset.readable_files:
        tasks = root_file_tasks(entry, step_size, count, align_to_baskets=True)
        if tasks is None:
            # uproot.dask cannot express this read (CSV, Parquet, RNTuple, EDM), so one task counts the whole file.
            one_file, shipped = shippable(dataset, entry)
            task = dask.delayed(count_file)(one_file, shipped, verdict_sets, step_size)
            parts.append((task, entry.entries, entry.path.name))
            file_totals.append(task)
            continue
        parts.extend((task, stop - start, entry.path.name) for task, (start, stop) in zip(tasks.tasks, tasks.steps))
        if not tasks.tasks:
            file_totals.append(dask.delayed(ReportTotals)())
            continue
        merged = tree_reduce(tasks.tasks, _merge_chunks)
        one_file, shipped = shippable(dataset, entry)
        file_totals.append(dask.delayed(_file_totals)(merged, one_file, shipped, verdict_sets, step_size))
    if not file_totals:
        return ReportGraph(dask.delayed(ReportTotals)(), [])
    return ReportGraph(tree_reduce(file_totals, _merge_totals), parts)


def build_report_dask(
    paths: list[str | Path] | tuple[str | Path, ...] | str | Path,
    client: Any,
    feature_set: str | None = None,
    feature_options: dict[str, Any] | None = None,
    layout: str | None = None,
    layout_files: tuple[str | Path, ...] = (),
    step_size: int = DEFAULT_STEP_SIZE,
    progress: ProgressCallback | None = None,
    dataset: Dataset | None = None,
) -> Report:
    """Return the same report as ``build_report``, with the event pass computed on the Dask ``client``.

    ``client`` is a ``distributed.Client`` (see ``dask_client``). ``progress`` is called
    with the fraction of entries read and a message each time a read task finishes.
    Raises the same errors as ``build_report`` for missing or unreadable data.
    """
    from distributed import as_completed

    started = time.perf_counter()
    if dataset is None:
        dataset = open_dataset(paths, layout=layout, layout_files=layout_files)
    verdict_sets = verdict_sets_for(feature_set, feature_options)
    graph = report_graph(dataset, verdict_sets, step_size)
    log.info("computing the report of %d files in %d read tasks on %s", len(dataset.readable_files), len(graph.parts), client)

    # The read tasks are computed with the totals, in one graph, so that their futures report progress without running twice.
    futures = client.compute([graph.totals, *[task for task, _, _ in graph.parts]])
    totals_future, part_futures = futures[0], futures[1:]
    sizes = {future.key: (n, name) for future, (_, n, name) in zip(part_futures, graph.parts)}
    total = max(sum(n for n, _ in sizes.values()), 1)
    read = 0
    for future in as_completed(part_futures):
        n, name = sizes[future.key]
        read += n
        if progress:
            progress(min(read / total, 1.0), f"read {read:,} events of {name}")
    del part_futures, futures
    totals: ReportTotals = totals_future.result()
    for error in totals.read_errors:
        log.warning("reading %s failed: %s", error["file"], error["reason"])
    return finish_report(dataset, paths, verdict_sets, totals, started, progress)


def _count_chunk(chunk: CanonicalChunk, verdict_sets: list[FeatureSet]) -> ReportTotals:
    totals = ReportTotals()
    totals.update(chunk, verdict_sets)
    return totals


def _merge_chunks(left: ChunkResult, right: ChunkResult) -> ChunkResult:
    """Merge the totals of two neighbouring steps of one file, and keep the first error."""
    if left.error is not None:
        return left
    merged = copy.deepcopy(left.value)
    if right.value is not None:
        merged.merge(right.value)
    return ChunkResult(merged, left.n_events + right.n_events, right.error)


def _file_totals(result: ChunkResult, dataset: Dataset, entry: FileEntry, verdict_sets: list[FeatureSet], step_size: int) -> ReportTotals:
    """Return the totals of one file, or count it again with ``count_file`` when one of its steps failed.

    The steps end at basket boundaries, not every ``step_size`` entries as in the
    serial read. So a file that fails part way is counted again as the serial read
    counts it: the chunks before the failure count, and the file is listed with the same reason.
    """
    if result.error is not None:
        return count_file(dataset, entry, verdict_sets, step_size)
    # A new object keeps the input unchanged, so a task that is run again gets the same result.
    totals = ReportTotals()
    totals.merge(result.value)
    return totals


def _merge_totals(left: ReportTotals, right: ReportTotals) -> ReportTotals:
    # A copy keeps the input unchanged, so a task that is run again gets the same result.
    merged = copy.deepcopy(left)
    merged.merge(right)
    return merged


__all__ = ["ReportGraph", "build_report_dask", "report_graph"]
