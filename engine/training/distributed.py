"""Data-parallel training with ``torch.distributed``: process groups, launch and rank agreement.

A run with several ranks uses ``DistributedDataParallel``. Ranks come either from ``torchrun``
(which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) or from
``launch_local``, which starts the ranks of one node with torch's elastic launcher. The backend
is NCCL for CUDA tensors and gloo for CPU tensors.

The config's ``training.batch_size`` is the global batch. Each rank trains on
``batch_size / world_size`` rows of every global batch, and the wrapper averages the gradients.
The run so follows the same path as one process with the same global batch, within float
rounding. Rank 0 alone writes the run directory.

Example::

    context = init_from_environment()      # None without torchrun's variables
    try:
        trainer = start_run(config, runs_dir="runs", distributed=context)
        trainer.run()
    finally:
        destroy(context)
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cmsgen.engine.errors import EXIT_FAILURE, EXIT_INTERRUPTED, CmsgenError, ConfigError, RunFailedError
from cmsgen.engine.logs import log_path

log = logging.getLogger(__name__)

# How long a collective operation waits for the other ranks before it raises. Rank 0 computes
# the physics metric and writes checkpoints while the others wait, so this must exceed an epoch's
# end on rank 0. A rank that dies usually makes the others fail at once (the connection closes).
PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=10)

# Environment variables that torchrun and the elastic launcher set for every rank.
ENVIRONMENT_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a data-parallel run.

    Arguments:
        rank: Global rank, 0 to ``world_size - 1``. Rank 0 writes the run directory.
        world_size: Number of ranks on all nodes.
        local_rank: Rank on this node, which selects the CUDA device.
        backend: The process group's backend, "gloo" or "cpu:gloo,cuda:nccl".
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def environment_world_size() -> int | None:
    """Return ``WORLD_SIZE`` as set by torchrun, or None when the variable is absent.

    Raises:
        ConfigError: A variable that torchrun sets is missing or is not an integer.
    """
    if "WORLD_SIZE" not in os.environ:
        return None
    return _environment_integer("WORLD_SIZE")


def init_from_environment(timeout: datetime.timedelta = PROCESS_GROUP_TIMEOUT) -> DistributedContext | None:
    """Join the process group that torchrun's environment variables describe.

    Returns None, and joins nothing, when ``WORLD_SIZE`` is absent or 1, so a plain run stays
    a single process. The backend handles CPU tensors with gloo and, when CUDA is available,
    CUDA tensors with NCCL, so the training device can be chosen after joining.

    Raises:
        ConfigError: A variable is missing or invalid.
        RunFailedError: The rendezvous with the other ranks failed or timed out.
    """
    world_size = environment_world_size()
    if world_size is None or world_size == 1:
        return None
    missing = [name for name in ENVIRONMENT_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(
            f"environment variable {missing[0]} is missing but WORLD_SIZE is set. "
            "Start several ranks with torchrun or with `cmsgen-tui train CONFIG --nproc N`."
        )
    rank = _environment_integer("RANK")
    local_rank = _environment_integer("LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise ConfigError(f"environment variable RANK = {rank} is invalid: expected 0 to {world_size - 1}")

    # NOTE: the NCCL half of this backend has not run in this project's tests, which use CPUs only.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    try:
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timeout)
    except (RuntimeError, ValueError) as error:
        raise RunFailedError(
            f"rank {rank} could not join the process group at {os.environ['MASTER_ADDR']}:"
            f"{os.environ['MASTER_PORT']}: {error}. Check that every rank was started and can reach that address."
        ) from error
    log.info("rank %d of %d joined the process group (backend %s)", rank, world_size, backend)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)


def destroy(context: DistributedContext | None) -> None:
    """Leave the process group, if this process joined one. Safe to call after a failure."""
    if context is not None and dist.is_initialized():
        dist.destroy_process_group()


def check_global_batch(batch_size: int, world_size: int) -> None:
    """Raise ConfigError unless ``batch_size`` splits into ``world_size`` equal shares."""
    if world_size > 1 and batch_size % world_size != 0:
        lower = batch_size - batch_size % world_size
        choices = f"{lower} or {lower + world_size}" if lower > 0 else str(world_size)
        raise ConfigError(
            f"training.batch_size = {batch_size} is invalid for {world_size} ranks: "
            f"expected a multiple of {world_size}, such as {choices}"
        )


def rank_device(name: str, context: DistributedContext) -> torch.device:
    """Return this rank's training device for a ``training.device`` value.

    "auto" and "cuda" give ``cuda:<local rank>`` when CUDA is available, else "cpu".

    Raises:
        ConfigError: The device is "mps", or "cuda" without a CUDA device.
    """
    if name == "mps":
        raise ConfigError("training.device = 'mps' is invalid with several ranks. Use 'cpu', or train with one process.")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device = 'cuda' is invalid: no CUDA device is available. Use 'auto' or 'cpu'.")
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", context.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def run_on_main(function: Callable[[], T], context: DistributedContext) -> T:
    """Call ``function`` on rank 0 alone and return its result on every rank.

    When ``function`` raises, rank 0 raises its exception and every other rank raises a copy,
    so that no rank waits for a result that never comes. The result travels pickled, on the CPU.
    """
    value: Any = None
    error: Exception | None = None
    if context.is_main:
        try:
            value = function()
        except Exception as caught:  # noqa: BLE001 - re-raised below, on every rank
            error = caught
            value = _picklable(caught)
    payload: list[Any] = [value]
    dist.broadcast_object_list(payload, src=0, device=torch.device("cpu"))
    if error is not None:
        raise error
    if isinstance(payload[0], BaseException):
        raise payload[0]
    return payload[0]


def mean_over_ranks(values: list[float], flag: bool, device: torch.device) -> tuple[list[float], bool]:
    """Average ``values`` over the ranks, and return them with whether ``flag`` is true on any rank.

    One all-reduce carries both, so the ranks agree on the values and on the flag in one round
    trip. A non-finite value on any rank makes the mean non-finite on every rank.
    """
    tensor = torch.tensor([*values, 1.0 if flag else 0.0], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    world_size = dist.get_world_size()
    totals = tensor.tolist()
    return [total / world_size for total in totals[:-1]], totals[-1] > 0


def any_rank(flag: bool, device: torch.device) -> bool:
    """Return whether ``flag`` is true on at least one rank."""
    return mean_over_ranks([], flag, device)[1]


def wrap_model(model: Any, device: torch.device, context: DistributedContext) -> None:
    """Wrap each of the model's ``data_parallel_modules`` in DistributedDataParallel.

    The wrappers start from rank 0's weights and buffers. Buffers are not broadcast again on each
    forward (``forward_sync_buffers=False``) because the families' buffers are constants or are
    kept equal by the model itself. ``find_unused_parameters`` stays off, because every wrapped
    network uses all its parameters whenever it is called.
    """
    device_ids = [device.index] if device.type == "cuda" else None
    replicas: dict[str, nn.Module] = {
        name: nn.parallel.DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)
        for name, module in model.data_parallel_modules().items()
    }
    model.set_data_parallel(replicas, context.rank, context.world_size)


# ---------------------------------------------------------------------- launch on one node


@dataclass(frozen=True)
class LaunchOutcome:
    """Outcome of the ranks started by ``launch_local``.

    Arguments:
        outcomes: What each rank's entry point returned (a JSON object), by rank. A rank that
            crashed or was killed has no entry.
        signal: The name of the signal that stopped the launcher ("SIGTERM"...), or None.
        failure: The launcher's description of ranks that exited with an error, or None.
    """

    outcomes: dict[int, dict[str, Any]]
    signal: str | None = None
    failure: str | None = None


def launch_local(nproc: int, entrypoint: Callable[..., dict[str, Any]], *args: Any) -> LaunchOutcome:
    """Start ``nproc`` ranks on this node with torch's elastic launcher and wait for them.

    Each rank runs ``entrypoint(*args)`` in a new process, with torchrun's environment
    variables set, and the rendezvous listens on 127.0.0.1 at a free port. ``entrypoint`` and
    ``args`` must be picklable, and the entry point returns a JSON object, which the launcher
    collects per rank. On SIGINT or SIGTERM the launcher sends the same signal to the ranks,
    waits for them to stop, and returns what they reported.

    Unless ``OMP_NUM_THREADS`` is set, each rank gets an equal share of this process's CPU cores
    for its intra-op threads, so that CPU ranks do not oversubscribe the cores.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc {nproc} is invalid: expected an integer >= 1")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"cmsgen-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        local_addr="127.0.0.1",
        max_restarts=0,
        monitor_interval=0.1,
    )
    with tempfile.TemporaryDirectory(prefix="cmsgen-ranks-") as folder:
        signal_name = failure = None
        try:
            with _elastic_logs_to_root_handlers(), _threads_per_rank(nproc):
                elastic_launch(config, _run_rank)(entrypoint, folder, *args)
        except SignalException as error:
            signal_name = error.sigval.name
            log.warning("launcher received %s and sent it to the ranks, which stop at their next step", signal_name)
        except ChildFailedError as error:
            failure = error.format_msg()
            log.error("ranks failed: %s", failure)
        outcomes = {}
        for path in Path(folder).glob("rank-*.json"):
            outcomes[int(path.stem.removeprefix("rank-"))] = json.loads(path.read_text(encoding="utf-8"))
    return LaunchOutcome(outcomes, signal_name, failure)


def _run_rank(entrypoint: Callable[..., dict[str, Any]], folder: str, *args: Any) -> None:
    """Run one rank's entry point and store what it returned, or its error, as ``rank-N.json``."""
    rank = int(os.environ.get("RANK", "0"))
    try:
        outcome = entrypoint(*args)
    except CmsgenError as error:
        log.exception("rank %d failed: %s", rank, error.message)
        outcome = {"exit_code": error.exit_code, "message": error.message, "error": type(error).__name__}
    except KeyboardInterrupt:
        log.warning("rank %d interrupted", rank)
        outcome = {"exit_code": EXIT_INTERRUPTED, "message": "interrupted, the last checkpoint is kept"}
    except Exception as error:  # noqa: BLE001 - reported to the launcher as this rank's outcome
        log.exception("rank %d failed with an unexpected error", rank)
        message = f"unexpected {type(error).__name__} on rank {rank}: {error}. The traceback is in {log_path()}."
        outcome = {"exit_code": EXIT_FAILURE, "message": message}
    path = Path(folder) / f"rank-{rank}.json"
    path.write_text(json.dumps(outcome), encoding="utf-8")
    if outcome.get("exit_code") == EXIT_INTERRUPTED:
        # A launcher that forwards SIGINT or SIGTERM no longer collects return values, so a rank
        # that returned would wait for it until the launcher kills it (30 s later, in torch 2.13).
        # The outcome file already contains the result, so the rank exits at once.
        sys.stdout.flush()
        sys.stderr.flush()
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _threads_per_rank(nproc: int) -> Iterator[None]:
    """Set ``OMP_NUM_THREADS`` for the ranks to start, unless the user set it."""
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // nproc))
    try:
        yield
    finally:
        del os.environ["OMP_NUM_THREADS"]


@contextlib.contextmanager
def _elastic_logs_to_root_handlers() -> Iterator[None]:
    """Send the launcher's log records to the root logger's handlers (the log file) instead of stderr.

    Torch gives its "torch" and "torch.distributed" loggers stderr handlers of their own. Without
    root handlers the records keep going there.
    """
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    handlers = logging.getLogger().handlers
    if not handlers:
        yield
        return
    propagates = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.propagate = False
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, propagates, strict=True):
            for handler in handlers:
                logger.removeHandler(handler)
            logger.propagate = propagate


def _environment_integer(name: str) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name} = {text!r} is invalid: expected an integer") from None


def _picklable(value: Any) -> Any:
    """Return ``value``, or a RunFailedError that carries its message when it is an exception that may not pickle."""
    if isinstance(value, BaseException) and not isinstance(value, CmsgenError):
        return RunFailedError(f"rank 0 failed with {type(value).__name__}: {value}")
    return value
