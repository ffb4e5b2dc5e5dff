"""Train / validation / test splits fixed by a seed, and their ``data.npz`` file in a run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmsgen.engine.errors import NoEventsError

# Below this many training events a run warns that its model and w1_mass are unreliable, and the
# report's verdict warns below this many selected events. This is an estimate, set below the 489
# training events of the 2012 RNTuple sample config, which trains usably.
SMALL_TRAINING_EVENTS = 200

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """Row indices of each split into the feature matrix, and the split matrices themselves.

    ``train``, ``val`` and ``test`` are float64 arrays [n_split, d] in physical units (GeV,
    radians). ``*_index`` are int64 row numbers into the matrix they were cut from.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray
    columns: tuple[str, ...]


def make_splits(
    values: np.ndarray,
    columns: tuple[str, ...],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> Splits:
    """Shuffle the rows of ``values`` [n, d] with ``seed`` and cut them into three splits.

    The validation and test splits get ``round(n * fraction)`` rows each (at least one
    for a fraction above zero), the training split the rest.
    """
    n = len(values)
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise NoEventsError(
            f"only {n} events are selected, too few for a validation split of {n_val} and a test split "
            f"of {n_test}. Use more data or smaller training.val_fraction and training.test_fraction."
        )

    order = np.random.default_rng(seed).permutation(n)
    train_index = np.sort(order[:n_train])
    val_index = np.sort(order[n_train : n_train + n_val])
    test_index = np.sort(order[n_train + n_val :])
    return Splits(
        train=values[train_index],
        val=values[val_index],
        test=values[test_index],
        train_index=train_index.astype(np.int64),
        val_index=val_index.astype(np.int64),
        test_index=test_index.astype(np.int64),
        columns=tuple(columns),
    )


def save_splits(splits: Splits, path: Path) -> None:
    """Write the splits to ``path`` (``data.npz``) atomically: a temporary file, then a rename."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            np.savez(
                handle,
                train=splits.train,
                val=splits.val,
                test=splits.test,
                train_index=splits.train_index,
                val_index=splits.val_index,
                test_index=splits.test_index,
                columns=np.array(splits.columns, dtype=str),
            )
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_splits(path: Path) -> Splits:
    """Read the splits written by ``save_splits``."""
    with np.load(path, allow_pickle=False) as data:
        return Splits(
            train=data["train"],
            val=data["val"],
            test=data["test"],
            train_index=data["train_index"],
            val_index=data["val_index"],
            test_index=data["test_index"],
            columns=tuple(str(name) for name in data["columns"]),
        )
