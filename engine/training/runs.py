"""Run directories: the files a training run writes, and the API that reads them back.

A run is a folder ``<runs_dir>/<name>/`` with ``config.toml``, ``metrics.jsonl``,
``status.json``, ``preprocessing.json``, ``data.npz`` and ``checkpoints/{last,best}.pt``.
The TUI and the CLI start, watch and list runs through these files alone, so every
reader here tolerates files that are missing or half-written by a running trainer.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmsgen.engine.errors import ConfigError, DataNotFoundError, UnreadableFileError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RUN_STATES = ("running", "finished", "stopped", "failed")
CHECKPOINT_NAMES = ("best", "last")
SAMPLE_CHUNK = 65_536  # events generated per model call in RunDirectory.sample


def utc_now() -> str:
    """Return the current time as an ISO 8601 string in UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and ``os.replace``.

    NaN and infinite floats raise ``ValueError``, because standard JSON has no such values.
    """
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # the process exists but belongs to another user
    except OSError:
        return False
    return True


class RunDirectory:
    """Read access to one run directory, finished or still running.

    Example::

        run = RunDirectory("runs/gan-dimuon-20240101-120000")
        run.status()["state"]
        events = run.sample(10_000, seed=1)   # [10000, d] in physical units
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    @property
    def name(self) -> str:
        """Name of the run, which is its folder name."""
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def preprocessing_path(self) -> Path:
        return self.path / "preprocessing.json"

    @property
    def data_path(self) -> Path:
        return self.path / "data.npz"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    def checkpoint_path(self, checkpoint: str = "last") -> Path:
        """Return the path of checkpoint "best" or "last", present or not."""
        if checkpoint not in CHECKPOINT_NAMES:
            raise ConfigError(
                f"checkpoint = {checkpoint!r} is invalid: expected one of {', '.join(CHECKPOINT_NAMES)}"
            )
        return self.checkpoints_dir / f"{checkpoint}.pt"

    def status(self) -> dict[str, Any]:
        """Return the content of ``status.json``.

        A missing, half-written or unreadable file gives ``{"state": "unknown", ...}`` with the
        reason in ``message``, never an exception. A "running" run whose process no longer
        exists on this machine is also reported as "unknown" (it was killed without saving).
        """
        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
            if not isinstance(status, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return self._unknown_status("status.json is missing")
        except (OSError, ValueError) as error:
            return self._unknown_status(f"status.json cannot be read: {error}")
        status.setdefault("name", self.name)
        state = status.get("state")
        if state not in RUN_STATES:
            status["state"] = "unknown"
        elif state == "running" and isinstance(status.get("pid"), int) and not _process_alive(status["pid"]):
            status["state"] = "unknown"
            status["message"] = f"process {status['pid']} is no longer running. The run can be resumed."
        return status

    def _unknown_status(self, message: str) -> dict[str, Any]:
        return {"state": "unknown", "name": self.name, "message": message, "progress": 0.0, "best_metric": None}

    def metrics(self) -> list[dict[str, Any]]:
        """Return the objects of ``metrics.jsonl`` in order, skipping a half-written last line."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def config(self) -> dict[str, Any]:
        """Return the resolved config of the run as nested tables."""
        try:
            return tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataNotFoundError(f"{self.path} is not a run directory: config.toml is missing") from None
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise UnreadableFileError(f"{self.config_path} cannot be read: {error}") from None

    def feature_set(self) -> Any:
        """Return the run's ``FeatureSet``, built from the config's name and options."""
        from cmsgen.engine.features import get_feature_set

        data = self.config()["data"]
        return get_feature_set(data["feature_set"], **data.get("options", {}))

    def load_split(self, split: str) -> np.ndarray:
        """Return the real events of ``split`` ("train", "val" or "test"), float64 [n, d], physical units."""
        from cmsgen.engine.training.splits import SPLIT_NAMES

        if split not in SPLIT_NAMES:
            raise ConfigError(f"split = {split!r} is invalid: expected one of {', '.join(SPLIT_NAMES)}")
        try:
            with np.load(self.data_path, allow_pickle=False) as data:
                return np.asarray(data[split], dtype=np.float64)
        except FileNotFoundError:
            raise DataNotFoundError(f"{self.data_path} not found. The run has not saved its data splits yet.") from None
        except (OSError, ValueError, KeyError) as error:
            raise UnreadableFileError(f"{self.data_path} cannot be read: {error}") from None

    def columns(self) -> tuple[str, ...]:
        """Return the feature column names stored with the data splits."""
        try:
            with np.load(self.data_path, allow_pickle=False) as data:
                return tuple(str(name) for name in data["columns"])
        except FileNotFoundError:
            raise DataNotFoundError(f"{self.data_path} not found. The run has not saved its data splits yet.") from None

    def preprocessing(self) -> Any:
        """Return the fitted ``Preprocessing`` of the run."""
        from cmsgen.engine.features.preprocessing import Preprocessing

        try:
            return Preprocessing.from_dict(json.loads(self.preprocessing_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise DataNotFoundError(f"{self.preprocessing_path} not found. The run has not started training.") from None
        except (OSError, ValueError) as error:
            raise UnreadableFileError(f"{self.preprocessing_path} cannot be read: {error}") from None

    def resolve_checkpoint(self, checkpoint: str = "best") -> str:
        """Return the checkpoint that ``load_model(checkpoint)`` loads: ``checkpoint``, or "last" in place of a missing "best".

        A run that stopped before its first validation has a last checkpoint and no best one.
        Callers that report the checkpoint they used pass the returned name on to
        ``load_model`` or ``sample``, so that a best checkpoint written in between changes nothing.
        """
        if checkpoint == "best" and not self.checkpoint_path("best").is_file() and self.checkpoint_path("last").is_file():
            return "last"
        return checkpoint

    def load_model(self, checkpoint: str = "best", device: str = "cpu") -> torch.nn.Module:
        """Build the run's model, load the weights of ``checkpoint`` ("best" or "last") and return it in eval mode.

        When "best" is requested but only "last" exists (the run stopped before its first
        validation), "last" is used and a warning is logged (see ``resolve_checkpoint``).
        """
        from cmsgen.engine.models import build_model
        from cmsgen.engine.training.checkpoint import load_checkpoint

        resolved = self.resolve_checkpoint(checkpoint)
        if resolved != checkpoint:
            log.warning("%s has no %s checkpoint yet, so the %s one is used", self.path, checkpoint, resolved)
        path = self.checkpoint_path(resolved)
        if not path.is_file():
            raise DataNotFoundError(f"checkpoint {path} not found. The run has not saved one yet.")

        model_table = dict(self.config()["model"])
        family = model_table.pop("family")
        state = load_checkpoint(path)
        model = build_model(family, int(state["dim"]), **model_table)
        model.load_state_dict(state["model"])
        model.to(device)
        model.eval()
        return model

    def sample(self, n: int, seed: int = 0, checkpoint: str = "best", device: str = "cpu") -> np.ndarray:
        """Generate ``n`` events with the model of ``checkpoint``, float64 [n, d] in physical units.

        Sampling happens in the preprocessed space in chunks of ``SAMPLE_CHUNK`` events, and the
        run's fitted preprocessing maps the result back. The same ``seed`` gives the same events.
        """
        import torch

        if n < 1:
            raise ConfigError(f"n = {n} is invalid: expected a number of events >= 1")
        model = self.load_model(checkpoint, device=device)
        preprocessing = self.preprocessing()
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        rng = np.random.default_rng(seed)

        chunks = []
        with torch.no_grad():
            for start in range(0, n, SAMPLE_CHUNK):
                size = min(SAMPLE_CHUNK, n - start)
                z = model.sample(size, generator=generator)
                chunks.append(z.detach().float().cpu().numpy().astype(np.float64))
        return np.asarray(preprocessing.inverse(np.concatenate(chunks), rng), dtype=np.float64)


def list_runs(runs_dir: str | Path = "runs") -> list[RunDirectory]:
    """Return the run directories directly under ``runs_dir``, newest first.

    A folder counts as a run when it contains ``config.toml`` or ``status.json``. A missing
    ``runs_dir`` gives an empty list.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = [
        RunDirectory(child)
        for child in root.iterdir()
        if child.is_dir() and ((child / "config.toml").is_file() or (child / "status.json").is_file())
    ]

    def modified(run: RunDirectory) -> float:
        for candidate in (run.status_path, run.config_path):
            try:
                return candidate.stat().st_mtime
            except OSError:
                continue
        return 0.0

    return sorted(runs, key=modified, reverse=True)
