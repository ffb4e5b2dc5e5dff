"""Training: configs, run directories, data splits, checkpoints and the training loop.

The heavy parts (the trainer, which imports torch) load on first use, so reading a
run's status stays cheap for the CLI and the TUI.
"""

from __future__ import annotations

from typing import Any

from cmsgen.engine.training.config import RunConfig, load_config, parse_config
from cmsgen.engine.training.runs import RunDirectory, list_runs

_TRAINER_NAMES = ("Progress", "TrainResult", "Trainer", "resolve_device", "resume_run", "start_run")

__all__ = ["RunConfig", "RunDirectory", "list_runs", "load_config", "parse_config", *_TRAINER_NAMES]


def __getattr__(name: str) -> Any:
    if name in _TRAINER_NAMES:
        from cmsgen.engine.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
