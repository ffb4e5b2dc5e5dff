"""Dask graphs that read the files of a dataset in steps of entries, and the Dask client they run on.

Dask is an optional extra (``pip install 'cmsgen-tui[dask]'``), so every dask,
distributed and dask-awkward import sits inside a function.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cmsgen.engine.canonical import CanonicalChunk, build_events
from cmsgen.engine.errors import ConfigError
from cmsgen.engine.layouts.registry import FieldSpec, Layout
from cmsgen.engine.sources.dataset import Dataset, FileEntry, needed_branches, read_failure
from cmsgen.engine.sources.rootfile import open_root

log = logging.getLogger(__name__)

DASK_EXTRA_HINT = "install the Dask extra with: pip install 'cmsgen-tui[dask]'"
DEFAULT_CONNECT_TIMEOUT = 10.0

# Characters that uproot.dask's ``filter_name`` reads as a wildcard pattern, not as part of a branch name.
_PATTERN_CHARACTERS = set("*?[]/")


@dataclass
class ChunkResult:
    """The result of a function applied to one step of entries of a file, or the error that stopped reading there.

    ``n_events`` is the number of entries in the step. ``error`` is the message that
    the serial read in ``Dataset.iterate_file`` raises for this step; ``value`` is then None.
    """

    value: Any
    n_events: int
    error: str | None = None


@dataclass
class FileTasks:
    """The Dask tasks that read one file through ``uproot.dask``, one task per step of entries.

    Each task returns a ChunkResult. ``steps`` lists the (start, stop) entries of each task.
    """

    entry: FileEntry
    tasks: list[Any]
    steps: list[tuple[int, int]]


def require_dask() -> None:
    """Raise ConfigError naming the extra to install when dask, distributed or dask-awkward is missing."""
    try:
        import dask  # noqa: F401
        import dask_awkward  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"Dask support needs the package {error.name}, which is not installed; {DASK_EXTRA_HINT}.") from None


@contextmanager
def dask_client(address: str | None = None, n_workers: int = 2, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Iterator[Any]:
    """Yield a ``distributed.Client`` on a new local cluster, or connected to the scheduler at ``address``.

    ``address`` None or ``"local"`` starts a ``LocalCluster`` of ``n_workers`` worker
    processes with one thread each, listening on 127.0.0.1 only, and closes it on exit.
    Otherwise ``address`` is a scheduler address such as ``tcp://host:8786``.
    Raises ConfigError when Dask is not installed, ``n_workers`` is below 1, or the
    scheduler cannot be reached within ``timeout`` seconds.
    """
    require_dask()
    import dask
    from distributed import Client, LocalCluster

    if address is None or address == "local":
        if n_workers < 1:
            raise ConfigError(f"The number of Dask workers must be at least 1, not {n_workers}.")
        log.info("starting a local Dask cluster of %d workers", n_workers)
        # distributed sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's adaptive
        # mmap threshold. The report allocates and frees large arrays at every step, and ran about
        # 30 % slower that way on the files of benchmarks/report_dask.py, so local workers keep glibc's default.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            # The scheduler's HTTP server starts even without a dashboard: a free port on 127.0.0.1
            # keeps it local and out of the way of another cluster on the default port 8787.
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
            )
        with cluster, Client(cluster) as client:
            yield client
        log.info("local Dask cluster closed")
        return

    unreachable = ConfigError(
        f"No Dask scheduler responded at {address} within {timeout:g} s; "
        "check that a scheduler runs there (`dask scheduler`, port 8786 by default) and accepts connections "
        "from this machine, or leave the address out to start a local cluster."
    )
    try:
        client = _connect(Client, address, timeout)
    except ValueError as error:
        log.error("invalid Dask scheduler address %s: %s", address, error)
        raise ConfigError(f"The Dask scheduler address {address} is invalid ({error}); use the form tcp://host:port.") from None
    except (OSError, TimeoutError) as error:
        log.error("cannot connect to the Dask scheduler at %s: %s", address, error)
        raise unreachable from None
    log.info("connected to the Dask scheduler at %s", address)
    try:
        yield client
    finally:
        client.close()


def _connect(client_class: Any, address: str, timeout: float) -> Any:
    """Return a client connected to ``address``, or raise TimeoutError after about ``timeout`` seconds.

    ``Client(address, timeout=...)`` waits forever when something other than a Dask
    scheduler (such as the dashboard's HTTP port) accepts the connection but never
    completes the handshake. The client is therefore created in a daemon thread, which
    is left behind when it does not finish in time.
    """
    outcome: dict[str, Any] = {}

    def create() -> None:
        try:
            outcome["client"] = client_class(address, timeout=timeout)
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = error

    thread = threading.Thread(target=create, name="cmsgen-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if thread.is_alive():
        log.error("the service at %s accepted the connection but did not complete the Dask handshake", address)
        raise TimeoutError(f"no handshake from {address}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["client"]


def root_file_tasks(
    entry: FileEntry, step_size: int, consume: Callable[[CanonicalChunk], Any], align_to_baskets: bool = False
) -> FileTasks | None:
    """Build one task per step of entries of a ROOT TTree file: read with ``uproot.dask``, then ``consume``.

    Each task turns its partition into canonical events with the same ``build_events``
    call as ``Dataset._iterate_root`` and returns ``ChunkResult(consume(chunk), ...)``.
    The steps are those of the serial read (``step_size`` entries each), or with
    ``align_to_baskets`` they end at basket boundaries common to all branches read,
    about ``step_size`` entries apart, so that no basket is decompressed twice.
    Layouts that join several trees (POET) read each tree with its own ``uproot.dask``
    array over the same steps. Returns None for files that ``uproot.dask`` cannot
    read in the same way: RNTuples, EDM files, files with no branch to read and
    branch names that ``filter_name`` would read as patterns. The caller then reads
    such a file in one ``dask.delayed`` task.
    """
    import dask

    layout = entry.choice.layout  # type: ignore[union-attr]
    if entry.data_file.format != "root" or layout.edm:
        return None
    by_tree: dict[str | None, list[str]] = {}
    for tree, branch in needed_branches(layout, entry):
        by_tree.setdefault(tree, []).append(branch)
    if not by_tree:
        return None
    kinds = {info.path: info for info in entry.trees}
    lengths = {}
    for name, branches in by_tree.items():
        path = name if name is not None else entry.main_tree
        info = kinds.get(path)  # type: ignore[arg-type]
        if info is None or info.kind != "tree" or any(set(branch) & _PATTERN_CHARACTERS for branch in branches):
            return None
        lengths[name] = info.entries
    # The serial read takes the shortest tree's length when joined trees differ.
    n_total = min(lengths.values())
    if align_to_baskets:
        steps = _basket_aligned_steps(entry, by_tree, n_total, step_size)
    else:
        steps = [(start, min(start + step_size, n_total)) for start in range(0, n_total, step_size)]
    if not steps:
        return FileTasks(entry, [], [])

    parts: dict[str | None, list[Any]] = {}
    for name, branches in by_tree.items():
        path = name if name is not None else entry.main_tree
        reads = _uproot_dask_reads(entry, path, sorted(set(branches)), steps)  # type: ignore[arg-type]
        if reads is None:
            return None
        parts[name] = reads

    read = dask.delayed(_read_chunk)
    tasks = []
    for i, (start, stop) in enumerate(steps):
        inputs = [(name, name if name is not None else entry.main_tree, branches, parts[name][i]) for name, branches in by_tree.items()]
        tasks.append(read(layout, entry.plans, str(entry.path), start, stop, inputs, consume))
    return FileTasks(entry, tasks, steps)


def _basket_aligned_steps(entry: FileEntry, by_tree: dict[str | None, list[str]], n_total: int, step_size: int) -> list[tuple[int, int]]:
    """Return steps of about ``step_size`` entries that start and end where every branch read starts a basket.

    A step is longer than ``step_size`` only where one cluster of baskets is.
    """
    boundaries = {0, n_total}
    common: set[int] | None = None
    for name, branches in by_tree.items():
        path = name if name is not None else entry.main_tree
        tree = entry.tree_objects.get(path)  # type: ignore[arg-type]
        if tree is None:
            tree = open_root(entry.path)[path]
        offsets = {int(offset) for offset in tree.common_entry_offsets(filter_name=sorted(set(branches))) if offset <= n_total}
        common = offsets if common is None else common & offsets
    boundaries |= common or set()
    ordered = sorted(boundaries)
    steps = []
    start = 0
    while start < n_total:
        candidates = [b for b in ordered if start < b <= start + step_size]
        stop = candidates[-1] if candidates else next(b for b in ordered if b > start)
        steps.append((start, stop))
        start = stop
    return steps


def _uproot_dask_reads(entry: FileEntry, tree_path: str, branches: list[str], steps: list[tuple[int, int]]) -> list[Any] | None:
    """Return one delayed (arrays, read report) pair per step of one tree, or None when uproot.dask cannot plan it."""
    import uproot
    from dask.delayed import Delayed

    try:
        arrays, _ = uproot.dask(
            {str(entry.path): {"object_path": tree_path, "steps": [list(step) for step in steps]}},
            filter_name=branches,
            open_files=False,
            allow_read_errors_with_report=(Exception,),
            # The serial read uses the memory-mapped source too (see open_root).
            handler=uproot.source.file.MemmapSource,
        )
    except Exception as error:  # noqa: BLE001 - the file is then read by one delayed task instead
        log.warning("uproot.dask cannot plan %s of %s (%s); reading the file in one task", tree_path, entry.path, error)
        return None
    if set(arrays.fields) != set(branches):
        log.warning("uproot.dask selects %s from %s of %s, not %s; reading the file in one task", arrays.fields, tree_path, entry.path, branches)
        return None
    # With a read report, each partition of uproot.dask's input layer returns the pair
    # (arrays, one-row report). dask-awkward only exposes the reports reduced into one
    # partition, so the tasks take the input layer's pairs directly.
    dependencies = arrays.dask.dependencies.get(arrays.name, set())
    if len(dependencies) != 1 or arrays.npartitions != len(steps):
        log.warning("unexpected uproot.dask graph for %s of %s; reading the file in one task", tree_path, entry.path)
        return None
    layer = next(iter(dependencies))
    graph = arrays.dask.cull_layers([layer])
    return [Delayed((layer, i), graph, layer=layer) for i in range(len(steps))]


def _read_chunk(
    layout: Layout,
    plans: dict[str, dict[str, FieldSpec]],
    path: str,
    start: int,
    stop: int,
    inputs: list[tuple[str | None, str, list[str], Any]],
    consume: Callable[[CanonicalChunk], Any],
) -> ChunkResult:
    """Build the canonical events of one step from its partitions, one per tree, and consume them.

    A step that uproot.dask failed to read is read again with ``TTree.arrays``, the
    call of the serial ``Dataset._iterate_root``, so that the error message is the same.
    """
    raw = {}
    for name, tree_path, branches, (arrays, report) in inputs:
        if report.exception[0] is not None:
            try:
                arrays = open_root(Path(path))[tree_path].arrays(sorted(set(branches)), entry_start=start, entry_stop=stop, library="ak")
            except Exception as error:  # noqa: BLE001 - the serial read catches every error here too
                return ChunkResult(None, stop - start, read_failure(path, start, stop, error))
        for branch in branches:
            raw[(name, branch)] = arrays[branch]
    return ChunkResult(consume(build_events(layout, plans, raw, stop - start)), stop - start)


def shippable(dataset: Dataset, entry: FileEntry) -> tuple[Dataset, FileEntry]:
    """Return a one-file dataset and a copy of ``entry`` without its open uproot objects, to send to a worker."""
    copy = replace(entry, tree_objects={})
    return Dataset([copy], dataset.choice), copy


def tree_reduce(items: list[Any], merge: Callable[[Any, Any], Any]) -> Any:
    """Combine delayed values pairwise, level by level, always as ``merge(left, right)`` in list order.

    With an associative ``merge`` the result equals a left-to-right fold of ``items``.
    """
    import dask

    combine = dask.delayed(merge)
    level = list(items)
    while len(level) > 1:
        paired = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
