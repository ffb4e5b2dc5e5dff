"""The training loop: data on the device once, batches cut from on-device permutations.

``start_run`` creates a run directory and returns a ``Trainer``, and ``resume_run`` reopens one
from its last checkpoint. ``Trainer.run()`` trains until the configured number of epochs,
a stop request (SIGINT, SIGTERM or ``request_stop``) or a non-finite loss, and writes
``metrics.jsonl``, ``status.json`` and the checkpoints while it trains.

Example::

    config = load_config("sample_configs/gan_zmumu_2010.toml")
    trainer = start_run(config, runs_dir="runs")
    result = trainer.run()            # TrainResult(state="finished", ...)
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import scipy.stats
import torch

from cmsgen.engine.errors import ConfigError, NoEventsError, RunFailedError
from cmsgen.engine.training import distributed as data_parallel
from cmsgen.engine.training.checkpoint import (
    CHECKPOINT_FORMAT,
    all_finite,
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from cmsgen.engine.training.config import RunConfig, dumps_toml, parse_config
from cmsgen.engine.training.distributed import DistributedContext
from cmsgen.engine.training.runs import RunDirectory, utc_now, write_json_atomic
from cmsgen.engine.training.splits import SMALL_TRAINING_EVENTS, Splits, load_splits, make_splits, save_splits

log = logging.getLogger(__name__)

STATUS_INTERVAL = 1.0  # seconds between status.json rewrites during an epoch


@dataclass(frozen=True)
class Progress:
    """One update sent to the progress callback.

    ``kind`` is "load" (reading the features: ``record`` has ``fraction`` and ``message``),
    "start", "step" (a logged step), "epoch" (an epoch ended, ``record`` has ``w1_mass``)
    or "end". ``record`` is the line written to ``metrics.jsonl``, empty for "start" and
    "end". ``status`` is the content of ``status.json`` at that moment.
    """

    kind: str
    record: dict[str, Any]
    status: dict[str, Any]


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of ``Trainer.run``: state "finished" or "stopped", and where training ended."""

    run: RunDirectory
    state: str
    step: int
    epoch: int
    best_metric: float | None
    message: str


@dataclass
class _Position:
    """Training position (step, epoch, batch within the epoch, best metric), saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    epoch_generator_state: torch.Tensor | None = None
    last_losses: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str, *, option: str | None = None) -> torch.device:
    """Return the torch device for a config value: "auto" picks CUDA, then MPS, then the CPU.

    ``option`` is the command-line option that gave ``name`` (such as "--device"), named in the
    error in place of the config key ``training.device``.

    Raises:
        ConfigError: "cuda" or "mps" was requested but is not available.
    """
    source = f"{option} {name!r}" if option else f"training.device = {name!r}"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{source} is invalid: no CUDA device is available. Use 'auto' or 'cpu'.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{source} is invalid: no MPS device is available. Use 'auto' or 'cpu'.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_name(config: RunConfig) -> str:
    """Return ``<family>-<feature set>-<local time>``, for example ``gan-dimuon-20240131-142501``."""
    return f"{config.model.family}-{config.data.feature_set}-{datetime.now():%Y%m%d-%H%M%S}"


def create_run_directory(runs_dir: str | Path, name: str | None, config: RunConfig) -> RunDirectory:
    """Create a new run directory ``<runs_dir>/<name>`` and its ``checkpoints`` folder.

    An explicitly named directory that already exists is used when no run has
    started in it (it has no ``status.json``), so a launcher can put its log and
    requested config there first.

    Raises:
        ConfigError: The name is invalid or taken, or the folder cannot be created.
    """
    root = Path(runs_dir).expanduser()
    explicit = name is not None
    name = name if explicit else default_run_name(config)
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ConfigError(f"run name {name!r} is invalid: expected a folder name without '/'")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"runs directory {root} cannot be created: {error.strerror or error}. Choose a writable --run-dir."
        ) from None

    path = root / name
    for suffix in range(1, 1000):
        try:
            path.mkdir()
            break
        except FileExistsError:
            if explicit and path.is_dir() and not (path / "status.json").exists():
                break
            if explicit:
                raise ConfigError(
                    f"run directory {path} already exists. Choose another --name, or continue it with --resume {path}"
                ) from None
            path = root / f"{name}-{suffix}"
        except OSError as error:
            raise ConfigError(
                f"run directory {path} cannot be created: {error.strerror or error}. Choose a writable --run-dir."
            ) from None
    try:
        (path / "checkpoints").mkdir(exist_ok=True)
    except OSError as error:
        raise ConfigError(f"run directory {path} is not writable: {error.strerror or error}") from None
    return RunDirectory(path)


def sample_warnings(n_train: int, n_val: int, batch_size: int) -> list[str]:
    """Return warnings about a training split of ``n_train`` events and a validation split of ``n_val``."""
    warnings = []
    if n_train < batch_size:
        warnings.append(f"only {_count(n_train, 'training event')}, fewer than the batch size {batch_size}: each batch holds all of them")
    if n_train < SMALL_TRAINING_EVENTS:
        warnings.append(
            f"only {_count(n_train, 'training event')} and {_count(n_val, 'validation event')}: expect a poor model "
            "and a noisy w1_mass. Train on more files or a looser selection"
        )
    return warnings


def _stretch_cosine(scheduler: torch.optim.lr_scheduler.CosineAnnealingLR, total_steps: int) -> None:
    """Replan a restored cosine schedule over ``total_steps``, for a resume with another epoch count.

    The schedule moves to the learning rate of the new cosine curve at the current step. Only
    setting ``T_max`` would not do: torch updates the rate from the previous one, so a run that
    ended at rate 0 would stay at 0 for all its added epochs.
    """
    scheduler.T_max = total_steps
    step = scheduler.last_epoch
    rates = [
        scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * step / total_steps)) / 2
        for base in scheduler.base_lrs
    ]
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    # get_last_lr() returns this list until the next step.
    scheduler._last_lr = rates


def check_inputs(config: RunConfig) -> None:
    """Check that the data files open with a known layout, before a run directory exists.

    A bad input then leaves no failed run behind, whose name the user would have to free by hand.
    Only the files' headers and branch names are read here. Damaged baskets or pages are found
    while the data is read.

    Raises:
        DataNotFoundError: A data path or layout file does not exist, or a directory contains no data file.
        ConfigError: A layout file is invalid.
        UnreadableFileError: No data file can be opened, or no known layout matches their branches.
    """
    from cmsgen.engine.sources import open_dataset
    from cmsgen.engine.sources.discovery import discover_files

    # A missing data path is named before a bad layout file, which open_dataset loads first.
    discover_files(list(config.data.paths))
    # NOTE: the trainer opens the files again when it reads the data, so their headers (and the
    # page checksums of an RNTuple) are read twice.
    dataset = open_dataset(list(config.data.paths), layout_files=config.data.layout_files, judge_branches=False)
    dataset.require_layout()


def start_run(
    config: RunConfig,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    callback: ProgressCallback | None = None,
    *,
    distributed: DistributedContext | None = None,
) -> Trainer:
    """Create a run directory for ``config`` and return its trainer, ready to ``run()``.

    With ``distributed``, every rank calls this: rank 0 creates the directory and sends its path
    to the other ranks.

    Raises:
        ConfigError: The run directory cannot be created, or the batch does not split into equal
            shares for the ranks.
    """
    check_inputs(config)
    if distributed is None:
        resolve_device(config.training.device)  # an unavailable device leaves no empty run directory behind
        run = create_run_directory(runs_dir, name, config)
        return Trainer(config, run, resume=False, callback=callback)
    data_parallel.check_global_batch(config.training.batch_size, distributed.world_size)
    path = data_parallel.run_on_main(lambda: create_run_directory(runs_dir, name, config).path, distributed)
    return Trainer(config, RunDirectory(path), resume=False, callback=callback, distributed=distributed)


def resume_run(
    path: str | Path,
    *,
    epochs: int | None = None,
    device: str | None = None,
    callback: ProgressCallback | None = None,
    distributed: DistributedContext | None = None,
) -> Trainer:
    """Reopen a run from its last checkpoint, optionally with more ``epochs`` or another ``device``.

    A run can be resumed with any number of ranks whose share of the batch is whole, whatever
    number trained it. With ``distributed``, rank 0 reads the run and sends its config to the others.

    Raises:
        DataNotFoundError, UnreadableFileError: The run or its files are missing.
        ConfigError: The run is still running, or already has ``epochs`` epochs, or its batch does
            not split into equal shares for the ranks.
    """
    run = RunDirectory(path)

    def read_config() -> RunConfig:
        status = run.status()
        if status["state"] == "running":
            raise ConfigError(
                f"run {run.path} is still running (process {status.get('pid')}). Stop it before resuming."
            )
        return parse_config(run.config(), base_dir=run.path).with_overrides(epochs=epochs, device=device)

    if distributed is None:
        return Trainer(read_config(), run, resume=True, callback=callback)
    config = data_parallel.run_on_main(read_config, distributed)
    data_parallel.check_global_batch(config.training.batch_size, distributed.world_size)
    return Trainer(config, run, resume=True, callback=callback, distributed=distributed)


class Trainer:
    """Train one model in one run directory.

    Arguments:
        config: The validated config. Its ``training`` section sets the loop.
        run: The run directory, empty for a new run, or with a checkpoint when ``resume``.
        resume: Whether to continue from ``checkpoints/last.pt``.
        callback: Called with a ``Progress`` at the start, on each logged step, at each
            epoch's end and at the end. It runs on the training thread, so it must be quick.
            With several ranks, rank 0 alone calls it.
        distributed: This rank's place in a data-parallel run, or None for one process. Rank 0
            alone writes the run directory. The other ranks never read or write it: rank 0 sends
            them the data splits, the preprocessing and, on resume, the checkpoint.
    """

    def __init__(
        self,
        config: RunConfig,
        run: RunDirectory,
        *,
        resume: bool = False,
        callback: ProgressCallback | None = None,
        distributed: DistributedContext | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run
        self.resuming = resume
        self.distributed = distributed
        self.writes_files = distributed is None or distributed.is_main
        self.callback = callback if self.writes_files else None
        if distributed is None:
            self.device = resolve_device(config.training.device)
        else:
            self.device = data_parallel.rank_device(config.training.device, distributed)
        self._stop_requested = threading.Event()
        # False until the first training step, so that a signal during set-up stops at once.
        self._training = False
        self._stop_reason = ""
        self._status: dict[str, Any] = {}
        self._status_written_at = 0.0
        self._metrics_handle: Any = None
        self._stop_agreed_now = False
        self.total_steps = 0
        self.position = _Position()
        # The data files read for a new run, recorded in its config.toml in place of globs and folders.
        self.files_read: list[str] = []
        # Warnings about the data that the start notification carries to the user, such as a small sample.
        self.warnings: list[str] = []
        # The message of the status written when a signal interrupts the run, for the caller to print.
        self.interrupt_message = ""

    # ----------------------------------------------------------------- public API

    def request_stop(self, reason: str = "stop requested") -> None:
        """Request a stop: the loop ends after the current step, saves a checkpoint and returns "stopped"."""
        self._stop_reason = reason
        self._stop_requested.set()

    def run(self) -> TrainResult:
        """Train to the last epoch or until a stop request, and return how training ended.

        Raises:
            RunFailedError: A loss became non-finite, or a file of the run could not be written.
                The state in ``status.json`` is then "failed", and the last good checkpoint is kept.
        """
        previous_handlers = self._install_signal_handlers()
        try:
            return self._run()
        finally:
            self._restore_signal_handlers(previous_handlers)
            if self._metrics_handle is not None:
                self._metrics_handle.close()
                self._metrics_handle = None

    # ----------------------------------------------------------------- set-up

    def _run(self) -> TrainResult:
        try:
            self._set_up()
        except KeyboardInterrupt:
            if not self.resuming:
                self._interrupted_before_training()
            else:
                self.interrupt_message = f"interrupted before training resumed; run {self.run_dir.path} is unchanged"
            raise
        except Exception as error:
            # A resumed run keeps its last status (finished, stopped...) when it cannot restart.
            if not self.resuming:
                self._fail_quietly(f"set-up failed: {_message_of(error)}")
            raise
        self._training = True
        try:
            return self._loop()
        except KeyboardInterrupt:
            self.interrupt_message = (
                f"interrupted at step {self.position.step}, and the last checkpoint is kept. "
                f"Resume with --resume {self.run_dir.path}"
            )
            self._write_status_quietly(state="stopped", message=self.interrupt_message)
            raise
        except RunFailedError as error:
            self._fail_quietly(error.message)
            raise
        except Exception as error:
            message = f"training failed at step {self.position.step}: {_message_of(error)}"
            if self.distributed is not None:
                message = (
                    f"training failed at step {self.position.step} on rank {self.distributed.rank} of "
                    f"{self.distributed.world_size}: {_message_of(error)}. If the connection to another rank was lost, "
                    "that rank stopped or crashed first, and the log file says why."
                )
            self._fail_quietly(message)
            raise

    def _interrupted_before_training(self) -> None:
        """Write the status of a new run interrupted during set-up: resumable only when its first checkpoint exists."""
        if self.run_dir.config_path.is_file() and self.run_dir.checkpoint_path("last").is_file():
            state = "stopped"
            self.interrupt_message = (
                f"interrupted before training started, at step 0. Resume with --resume {self.run_dir.path}"
            )
        else:
            # "failed", because a "stopped" run is listed as one that can be resumed.
            state = "failed"
            self.interrupt_message = (
                "interrupted before training started, so the run has no checkpoint to resume. "
                "Start a new run with the same config."
            )
        self._write_status_quietly(state=state, message=self.interrupt_message)

    def _set_up(self) -> None:
        from cmsgen.engine.features import get_feature_set
        from cmsgen.engine.features.preprocessing import Preprocessing
        from cmsgen.engine.models import build_model

        training = self.config.training
        seed_everything(training.seed)
        self.feature_set = get_feature_set(self.config.data.feature_set, **self.config.data.options)

        if self.distributed is None:
            self.splits, self.preprocessing = self._prepare_data()
        else:
            splits, preprocessing = data_parallel.run_on_main(self._prepare_data, self.distributed)
            self.splits = splits
            # Rank 0 keeps its own object. The other ranks rebuild it from its exact dictionary form.
            self.preprocessing = preprocessing if self.distributed.is_main else Preprocessing.from_dict(preprocessing.to_dict())

        # The transform is seeded by the config alone, so a resumed run rebuilds the same tensor.
        train_z = self.preprocessing.transform(self.splits.train, np.random.default_rng([training.seed, 0]))
        self.train_x = torch.as_tensor(train_z, dtype=torch.float32).to(self.device)
        self.val_mass = self._mass(self.splits.val)
        self.dim = int(self.preprocessing.output_dim)

        hyperparameters = dict(self.config.model.hyperparameters)
        self.model = build_model(self.config.model.family, self.dim, **hyperparameters).to(self.device)
        self.optimizers = self.model.configure_optimizers(training.lr, training.weight_decay)
        self._attach_mass_function()

        n_train = len(self.splits.train)
        self.batch_size = min(training.batch_size, n_train)
        self.warnings = sample_warnings(n_train, len(self.splits.val), training.batch_size)
        for warning in self.warnings:
            log.warning("run %s: %s", self.run_dir.name, warning)
        # The batch size is global: each rank trains on its equal share of every batch.
        world_size = 1 if self.distributed is None else self.distributed.world_size
        data_parallel.check_global_batch(self.batch_size, world_size)
        self.rank_batch_size = self.batch_size // world_size
        self.rank_offset = 0 if self.distributed is None else self.distributed.rank * self.rank_batch_size
        self.steps_per_epoch = max(1, n_train // self.batch_size)
        self.total_steps = training.epochs * self.steps_per_epoch
        self.schedulers = self._make_schedulers()
        self.batch_generator = torch.Generator(device=self.device)
        self.batch_generator.manual_seed(training.seed)
        # NOTE: the bf16 CUDA path has not been run in this project's tests, which run on CPU only.
        self.autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        )

        if self.resuming:
            self._restore()
        if self.distributed is not None:
            data_parallel.wrap_model(self.model, self.device, self.distributed)
        # A resumed run rewrites its config too, so that --epochs and --device overrides persist.
        resolved = self.config.to_dict()
        resolved["model"] = {"family": self.config.model.family, **self.model.hyperparameters()}
        if self.files_read:
            # The files read, not the globs or folders that matched them, so that the run records its input.
            resolved["data"]["paths"] = list(self.files_read)
            log.info("run %s reads %s, matched by %s", self.run_dir.name, self.files_read, list(self.config.data.paths))
        self._write(self.run_dir.config_path, lambda p: _write_text_atomic(dumps_toml(resolved), p))
        if not self.resuming:
            self._save("last")
        self._open_metrics()
        log.info(
            "%s run %s on %s: %d training events, batch size %d, %d steps per epoch, %d epochs",
            "resuming" if self.resuming else "starting",
            self.run_dir.path,
            self.device,
            n_train,
            self.batch_size,
            self.steps_per_epoch,
            training.epochs,
        )
        if self.distributed is not None:
            log.info(
                "rank %d of %d trains on rows %d to %d of each batch",
                self.distributed.rank,
                world_size,
                self.rank_offset,
                self.rank_offset + self.rank_batch_size - 1,
            )

    def _prepare_data(self) -> tuple[Splits, Any]:
        """Load and split the data and fit the preprocessing, or read both back on resume."""
        from cmsgen.engine.features.preprocessing import Preprocessing

        if self.resuming:
            return load_splits(self.run_dir.data_path), self.run_dir.preprocessing()
        splits = self._load_and_split()
        preprocessing = Preprocessing.fit(
            splits.train,
            splits.columns,
            self._column_kinds(splits),
            dict(self.feature_set.discrete_values),
            seed=self.config.training.seed,
        )
        self._write(self.run_dir.preprocessing_path, lambda p: write_json_atomic(preprocessing.to_dict(), p))
        return splits, preprocessing

    def _load_and_split(self) -> Splits:
        from cmsgen.engine.features import load_features

        data = self.config.data
        table = load_features(
            list(data.paths),
            data.feature_set,
            options=data.options,
            max_events=data.max_events,
            layout_files=data.layout_files,
            dask=data.dask,
            progress=lambda fraction, message: self._notify("load", {"fraction": fraction, "message": message}),
        )
        self.files_read = list(table.files)
        values = np.asarray(table.values, dtype=np.float64)
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            log.warning(
                "dropped %d of %d events with NaN or infinite features before training",
                int((~finite).sum()),
                len(values),
            )
            values = values[finite]
        if len(values) == 0:
            raise NoEventsError(f"no events with finite features in {', '.join(data.paths)}")
        training = self.config.training
        splits = make_splits(
            values,
            tuple(table.columns),
            val_fraction=training.val_fraction,
            test_fraction=training.test_fraction,
            seed=training.seed,
        )
        self._write(self.run_dir.data_path, lambda p: save_splits(splits, p))
        return splits

    def _column_kinds(self, splits: Splits) -> tuple[str, ...]:
        kinds = tuple(self.feature_set.kinds)
        if len(kinds) != len(splits.columns):
            raise ConfigError(
                f"feature set {self.config.data.feature_set!r} has {len(kinds)} kinds for "
                f"{len(splits.columns)} columns"
            )
        return kinds

    def _mass(self, x: np.ndarray) -> np.ndarray:
        """Return the invariant mass (GeV) of each event of ``x`` [n, d] in physical units."""
        observables = self.feature_set.observables(x)
        if "mass" in observables:
            return np.asarray(observables["mass"], dtype=np.float64)
        from cmsgen.engine.output import invariant_mass

        return invariant_mass(x, self.splits.columns)

    def _attach_mass_function(self) -> None:
        """Set the model's differentiable mass function when the model and the feature set support one."""
        if not hasattr(self.model, "set_mass_function"):
            return
        from cmsgen.engine.features.preprocessing import make_dimuon_mass_function

        prefixes = [c[: -len("_pt")] for c, k in zip(self.preprocessing.columns, self.preprocessing.kinds) if k == "pt"]
        if len(prefixes) < 2:
            return
        try:
            self.model.set_mass_function(make_dimuon_mass_function(self.preprocessing, (prefixes[0], prefixes[1])))
        except ConfigError as error:
            log.info("no differentiable mass for this feature set: %s", error.message)

    def _make_schedulers(self) -> list[torch.optim.lr_scheduler.LRScheduler]:
        if self.config.training.scheduler == "cosine":
            return [
                torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.total_steps)
                for optimizer in self.optimizers
            ]
        return []

    # ----------------------------------------------------------------- the loop

    def _loop(self) -> TrainResult:
        training = self.config.training
        position = self.position
        self._write_status(state="running", message="training", force=True)
        self._notify("start", {"warnings": list(self.warnings)})

        interval_start = time.perf_counter()
        interval_steps = 0
        while position.epoch < training.epochs:
            permutation = self._epoch_permutation()
            for batch_index in range(position.batch_in_epoch, self.steps_per_epoch):
                start = batch_index * self.batch_size + self.rank_offset
                batch = self.train_x.index_select(0, permutation[start : start + self.rank_batch_size])
                with self.autocast:
                    losses = self.model.training_step(batch, position.step)
                for scheduler in self.schedulers:
                    scheduler.step()
                position.step += 1
                position.batch_in_epoch = batch_index + 1
                interval_steps += 1
                if self.distributed is not None:
                    losses = self._agree_on_step(losses)
                self._check_finite(losses)
                position.last_losses = losses

                end_of_epoch = position.batch_in_epoch == self.steps_per_epoch
                if position.step % training.log_every == 0 and not end_of_epoch:
                    elapsed = time.perf_counter() - interval_start
                    record = self._record(losses, interval_steps, elapsed)
                    self._append_metrics(record)
                    self._write_status(state="running", message="training")
                    self._notify("step", record)
                    interval_start, interval_steps = time.perf_counter(), 0

                if self._stop_agreed() and not end_of_epoch:
                    return self._stop()

            elapsed = time.perf_counter() - interval_start
            self._end_epoch(position.last_losses, interval_steps, elapsed)
            interval_start, interval_steps = time.perf_counter(), 0
            if position.epoch < training.epochs and self._stop_at_epoch_end():
                return self._stop(save=False)  # _end_epoch has just saved this state

        message = f"finished {_count(position.epoch, 'epoch')} ({_count(position.step, 'step')})"
        self._write_status(state="finished", message=message, force=True)
        self._notify("end", {})
        if self.writes_files:
            # Rank 0 alone computes the physics metric, so only its line names the best value.
            best = "none" if position.best_metric is None else f"{position.best_metric:.4g} GeV"
            log.info("run %s %s, best w1_mass %s", self.run_dir.path, message, best)
        else:
            log.info("rank %d of run %s %s", self.distributed.rank, self.run_dir.path, message)  # type: ignore[union-attr]
        return self._result("finished", message)

    def _agree_on_step(self, losses: dict[str, float]) -> dict[str, float]:
        """Average the step's losses over the ranks, and agree on whether to stop after this step.

        Each rank's losses are means over its equal share of the batch, so their mean is the
        loss of the global batch. The stop flag rides on the same all-reduce, so every rank gets
        a stop request (a signal to any rank) at the same step.
        """
        names = list(losses)
        values, stop = data_parallel.mean_over_ranks(
            [float(losses[name]) for name in names], self._stop_requested.is_set(), self.device
        )
        self._stop_agreed_now = stop
        if stop and not self._stop_requested.is_set():
            self.request_stop("another rank received a stop request")
        return dict(zip(names, values, strict=True))

    def _stop_agreed(self) -> bool:
        """Return whether to stop after this step: the flag agreed at this step with several ranks."""
        if self.distributed is None:
            return self._stop_requested.is_set()
        return self._stop_agreed_now

    def _stop_at_epoch_end(self) -> bool:
        """Return whether to stop at this epoch's end, agreed by all ranks when there are several."""
        if self.distributed is None:
            return self._stop_requested.is_set()
        return data_parallel.any_rank(self._stop_requested.is_set(), self.device)

    def _epoch_permutation(self) -> torch.Tensor:
        """Draw this epoch's permutation of the training rows on the device and return it.

        The generator state before the draw is stored, so a run resumed from a mid-epoch checkpoint can
        redraw the same permutation on resume.
        """
        position = self.position
        if position.batch_in_epoch > 0 and position.epoch_generator_state is not None:
            self.batch_generator.set_state(position.epoch_generator_state)
        else:
            position.batch_in_epoch = 0
        position.epoch_generator_state = self.batch_generator.get_state()
        return torch.randperm(len(self.train_x), generator=self.batch_generator, device=self.device)

    def _end_epoch(self, losses: dict[str, float], interval_steps: int, elapsed: float) -> None:
        position = self.position
        position.epoch += 1
        position.batch_in_epoch = 0
        if not self.writes_files:
            return  # rank 0 alone computes the physics metric and writes the epoch's files
        w1 = self._physics_metric()
        improved = math.isfinite(w1) and (position.best_metric is None or w1 < position.best_metric)
        if improved:
            position.best_metric = w1
            position.best_step = position.step

        record = self._record(losses, interval_steps, elapsed)
        record["w1_mass"] = w1 if math.isfinite(w1) else None
        record["best_w1_mass"] = position.best_metric
        self._save("last")
        if improved:
            self._save("best")
        self._append_metrics(record)
        message = f"epoch {position.epoch}: w1_mass {w1:.4g} GeV"
        self._write_status(state="running", message=message, force=True)
        self._notify("epoch", record)
        log.info("run %s %s (best %s at step %s)", self.run_dir.name, message, position.best_metric, position.best_step)

    def _physics_metric(self) -> float:
        """Return W1 (GeV) between the invariant masses of generated events and the validation split.

        The sample uses its own generators, seeded by the config seed and the epoch, so it
        consumes no random numbers of the training loop.
        """
        training = self.config.training
        generator = torch.Generator(device=self.device)
        generator.manual_seed(training.seed * 1_000_003 + self.position.epoch)
        with torch.no_grad():
            z = self.model.sample(training.metric_events, generator=generator)
        z_values = z.detach().float().cpu().numpy()
        finite = np.isfinite(z_values).all(axis=1)
        if not finite.any():
            log.warning("epoch %d: every generated event is non-finite", self.position.epoch)
            return math.inf
        generated = self.preprocessing.inverse(z_values[finite], np.random.default_rng([training.seed, 1, self.position.epoch]))
        mass = self._mass(generated)
        mass = mass[np.isfinite(mass)]
        if len(mass) == 0:
            return math.inf
        return float(scipy.stats.wasserstein_distance(mass, self.val_mass))

    def _check_finite(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            if not math.isfinite(value):
                last = self.run_dir.checkpoint_path("last")
                raise RunFailedError(
                    f"{name} = {value} at step {self.position.step} is not finite. Training stopped and the last "
                    f"good checkpoint {last} is kept. Lower training.lr or check the data."
                )

    def _stop(self, save: bool = True) -> TrainResult:
        position = self.position
        if save:
            self._save("last")
        message = f"stopped at step {position.step} ({self._stop_reason}). Resume with --resume {self.run_dir.path}"
        self._write_status(state="stopped", message=message, force=True)
        self._notify("end", {})
        log.info("run %s %s", self.run_dir.path, message)
        return self._result("stopped", message)

    def _result(self, state: str, message: str) -> TrainResult:
        position = self.position
        return TrainResult(self.run_dir, state, position.step, position.epoch, position.best_metric, message)

    # ----------------------------------------------------------------- records and files

    def _record(self, losses: dict[str, float], steps: int, elapsed: float) -> dict[str, Any]:
        record: dict[str, Any] = {"step": self.position.step, "epoch": self.position.epoch, "time": time.time()}
        record.update(losses)
        record["lr"] = self.optimizers[0].param_groups[0]["lr"]
        record["events_per_second"] = steps * self.batch_size / elapsed if elapsed > 0 else None
        record.setdefault("grad_norm", None)
        return record

    def _open_metrics(self) -> None:
        if not self.writes_files:
            return
        path = self.run_dir.metrics_path
        if self.resuming:
            self._truncate_metrics(self.position.step)
        try:
            self._metrics_handle = open(path, "a", encoding="utf-8")
        except OSError as error:
            raise _write_error(path, error) from error

    def _truncate_metrics(self, step: int) -> None:
        """Drop lines logged after the checkpoint's step, so a resumed run does not repeat steps."""
        records = [r for r in self.run_dir.metrics() if isinstance(r.get("step"), int) and r["step"] <= step]
        text = "".join(json.dumps(r) + "\n" for r in records)
        self._write(self.run_dir.metrics_path, lambda p: _write_text_atomic(text, p))

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if not self.writes_files:
            return
        try:
            self._metrics_handle.write(json.dumps(record) + "\n")
            self._metrics_handle.flush()
        except OSError as error:
            raise _write_error(self.run_dir.metrics_path, error) from error

    def _write_status(self, *, state: str, message: str, force: bool = False) -> None:
        if not self.writes_files:
            return
        now = time.monotonic()
        if not force and now - self._status_written_at < STATUS_INTERVAL:
            return
        position = self.position
        training = self.config.training
        if not self._status:
            self._status = {"started": utc_now()}
        self._status.update(
            {
                "state": state,
                "pid": os.getpid(),
                "name": self.run_dir.name,
                "model": self.config.model.family,
                "feature_set": self.config.data.feature_set,
                "step": position.step,
                "total_steps": self.total_steps,
                "epoch": position.epoch,
                "total_epochs": training.epochs,
                "progress": position.step / self.total_steps if self.total_steps else 0.0,
                "message": message,
                "best_metric": position.best_metric,
                "best_step": position.best_step,
                "warnings": list(self.warnings),
                "updated": utc_now(),
            }
        )
        if self.distributed is not None:
            self._status["world_size"] = self.distributed.world_size
        self._write(self.run_dir.status_path, lambda p: write_json_atomic(self._status, p))
        self._status_written_at = now

    def _write_status_quietly(self, *, state: str, message: str) -> None:
        try:
            self._write_status(state=state, message=message, force=True)
        except Exception:  # noqa: BLE001 - the original error matters more than the status file
            log.exception("could not write the %s status of run %s", state, self.run_dir.path)

    def _fail_quietly(self, message: str) -> None:
        log.error("run %s failed: %s", self.run_dir.path, message)
        self._write_status_quietly(state="failed", message=message)

    def _write(self, path: Path, writer: Callable[[Path], None]) -> None:
        if not self.writes_files:
            return
        try:
            writer(path)
        except OSError as error:
            raise _write_error(path, error) from error

    def _notify(self, kind: str, record: dict[str, Any]) -> None:
        """Pass a progress update to the callback. A callback that fails is dropped, and the run goes on.

        The callback only displays progress (a progress bar, log lines, a test's probe), so its
        failure, such as a closed stdout under ``| head``, must not fail a run that trains well.
        """
        if self.callback is None:
            return
        try:
            self.callback(Progress(kind, dict(record), dict(self._status)))
        except Exception:  # noqa: BLE001 - any display error, logged with its traceback
            log.warning("run %s: the progress callback failed, so progress is no longer shown", self.run_dir.name, exc_info=True)
            self.callback = None

    # ----------------------------------------------------------------- checkpoints

    def _save(self, checkpoint: str) -> None:
        """Write checkpoint "last" or "best". Weights that are not finite are never written.

        The model's state dict has no "module." prefixes, because the data-parallel wrappers are
        not its submodules, so any number of ranks can resume from it.
        """
        if not self.writes_files:
            return
        if not all_finite(self.model):
            log.error(
                "not saving the %s checkpoint at step %d: the weights are not finite", checkpoint, self.position.step
            )
            return
        position = self.position
        state = {
            "format": CHECKPOINT_FORMAT,
            "family": self.config.model.family,
            "dim": self.dim,
            "model": self.model.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            "rng": capture_rng_states(self.batch_generator),
            "step": position.step,
            "epoch": position.epoch,
            "batch_in_epoch": position.batch_in_epoch,
            "epoch_generator_state": position.epoch_generator_state,
            "best_metric": position.best_metric,
            "best_step": position.best_step,
            "last_losses": dict(position.last_losses),
        }
        save_checkpoint(state, self.run_dir.checkpoint_path(checkpoint))

    def _restore(self) -> None:
        path = self.run_dir.checkpoint_path("last")
        if self.distributed is None:
            state = load_checkpoint(path)
        else:
            state = data_parallel.run_on_main(lambda: load_checkpoint(path), self.distributed)
        if int(state["dim"]) != self.dim:
            raise ConfigError(
                f"checkpoint of run {self.run_dir.path} has {state['dim']} features but the preprocessing "
                f"gives {self.dim}, so the run directory is inconsistent"
            )
        self.model.load_state_dict(state["model"])
        for optimizer, optimizer_state in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(optimizer_state)
        for scheduler, scheduler_state in zip(self.schedulers, state["schedulers"], strict=False):
            scheduler.load_state_dict(scheduler_state)
            if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max != self.total_steps:
                _stretch_cosine(scheduler, self.total_steps)
        restore_rng_states(state["rng"], self.batch_generator)
        self.position = _Position(
            step=int(state["step"]),
            epoch=int(state["epoch"]),
            batch_in_epoch=int(state["batch_in_epoch"]),
            best_metric=state["best_metric"],
            best_step=state["best_step"],
            epoch_generator_state=state["epoch_generator_state"],
            last_losses=dict(state.get("last_losses", {})),
        )
        if self.position.epoch >= self.config.training.epochs:
            raise ConfigError(
                f"run {self.run_dir.path} already trained {_count(self.position.epoch, 'epoch')}. "
                "Pass --epochs with a larger number to train further."
            )

    # ----------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handle(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if not self._training:
                # Before the first step there is nothing to save, so reading the data stops at once.
                log.warning("received %s before training started: stopping now", name)
                raise KeyboardInterrupt
            if self._stop_requested.is_set() and signum == signal.SIGINT and self.distributed is None:
                # A second Ctrl-C stops at once, without a new checkpoint. Ranks of a data-parallel
                # run get a second SIGINT from the launcher after Ctrl-C, so they keep the agreed stop.
                raise KeyboardInterrupt
            if self._stop_requested.is_set():
                # The launcher of a data-parallel run sends SIGINT and SIGTERM together: keep the first name.
                log.warning("received %s while stopping", name)
                return
            log.warning("received %s: stopping after the current step", name)
            self.request_stop(f"received {name}")

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handle)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _write_text_atomic(text: str, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_error(path: Path, error: OSError) -> RunFailedError:
    hint = "free disk space" if error.errno == errno.ENOSPC else "check that the run directory is writable"
    return RunFailedError(f"could not write {path}: {error.strerror or error}. {hint.capitalize()}, then resume the run.")


def _count(number: int, noun: str) -> str:
    """Return ``number`` and ``noun`` in the singular or plural, for example "1 epoch" or "3 epochs"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _message_of(error: BaseException) -> str:
    message = getattr(error, "message", None)
    return message if isinstance(message, str) and message else f"{type(error).__name__}: {error}"
