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
    previous checkpoint at ``path`` untouched, and raises ``RunFailedError`` with the path
    and the operating system's reason.
    """
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # torch.save writes through this Python file object, so a failed write raises OSError
        # with its errno here. torch.save itself reports it as a RuntimeError ("unexpected pos")
        # whose __context__ is that OSError.
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        raise _checkpoint_write_error(path, error) from error
    finally:
        temporary.unlink(missing_ok=True)


def _checkpoint_write_error(path: Path, error: BaseException) -> RunFailedError:
    """Return the error for a failed checkpoint write, with the OSError's reason when ``error`` wraps one."""
    cause = _os_error_in_chain(error)
    if cause is None:
        reason = f"{type(error).__name__}: {error}"
        advice = "Check the run directory and the free disk space"
    else:
        reason = cause.strerror or str(cause)
        advice = "Free disk space" if cause.errno == errno.ENOSPC else "Check that the run directory is writable"
    return RunFailedError(f"could not write checkpoint {path}: {reason}. {advice}, then resume the run.")


def _os_error_in_chain(error: BaseException | None) -> OSError | None:
    """Return the first OSError among ``error`` and its causes and contexts, or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


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
