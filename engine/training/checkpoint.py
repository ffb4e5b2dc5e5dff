"""Checkpoints: atomic writes, and random-number-generator states in a ``weights_only`` form.

A checkpoint contains only tensors and plain Python containers (model state, optimiser
and scheduler states, generator states, step, epoch, best metric), so that
``torch.load(path, weights_only=True)`` reads it without unpickling arbitrary objects.
"""

from __future__ import annotations

import errno
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmsgen.engine.errors import RunFailedError, UnreadableFileError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    A failed write (full disk, unwritable folder) removes the temporary file, keeps the
    previous checkpoint at ``path`` untouched, and raises ``RunFailedError`` with the path.
    """
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise RunFailedError(
            f"could not write checkpoint {path}: {error.strerror or error}. "
            + ("Free disk space" if error.errno == errno.ENOSPC else "Check that the run directory is writable")
            + ", then resume the run."
        ) from error
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with ``weights_only=True`` and return its state dict."""
    if not path.is_file():
        raise UnreadableFileError(f"checkpoint {path} not found. The run may not have saved one yet.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise UnreadableFileError(f"checkpoint {path} cannot be read: {error}") from error


def all_finite(module: torch.nn.Module) -> bool:
    """Return whether every parameter and buffer of ``module`` is finite."""
    tensors = [*module.parameters(), *module.buffers()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def capture_rng_states(batch_generator: torch.Generator) -> dict[str, Any]:
    """Capture the global random states and the batch generator's, as tensors and plain containers.

    Covers Python's ``random``, NumPy's global state, torch's CPU generator, every CUDA
    device's generator, the MPS generator, and ``batch_generator`` (the generator that draws
    the batch permutations, on the training device).
    """
    version, python_state, gauss = random.getstate()
    legacy = np.random.get_state()
    states: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(python_state, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy_legacy": {
            "name": legacy[0],
            "keys": torch.from_numpy(legacy[1].astype(np.int64)),
            "pos": int(legacy[2]),
            "has_gauss": int(legacy[3]),
            "cached_gaussian": float(legacy[4]),
        },
        "torch": torch.get_rng_state(),
        "batch_generator": batch_generator.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any], batch_generator: torch.Generator) -> None:
    """Restore the states captured by ``capture_rng_states``."""
    python = states["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"]))
    legacy = states["numpy_legacy"]
    np.random.set_state(
        (
            legacy["name"],
            legacy["keys"].numpy().astype(np.uint32),
            legacy["pos"],
            legacy["has_gauss"],
            legacy["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    batch_generator.set_state(states["batch_generator"])
    if "cuda" in states and torch.cuda.is_available():
        saved = states["cuda"]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)
        else:
            log.warning(
                "the checkpoint has %d CUDA generator states but %d devices are visible, "
                "so CUDA random numbers will not continue exactly",
                len(saved),
                torch.cuda.device_count(),
            )
    if "mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])
