"""Memorisation check: are generated events closer to the training events than new real events are?

A model that copies its training set produces events that sit on top of
training events. The check computes the Euclidean distance from each generated
event to its nearest training event and compares it with the same distance for
held-out real (test) events. The features are standardised with the training
sample's mean and standard deviation, and ``scipy.spatial.cKDTree`` finds the
nearest neighbours.

The rule for "possible memorisation" (both parts are reported):

- the median generated nearest-neighbour distance is below
  ``median_ratio_threshold`` (default 0.8) times the held-out median, and a
  one-sided two-sample KS test finds the generated distances smaller with
  p < ``p_value_threshold`` (default 0.01), or
- more than ``copy_fraction_threshold`` (default 1 %) of the generated events
  are exact copies, which lie within ``copy_distance`` (default 1e-6,
  standardised units) of a training event.

A model that puts too many events in the densest region (mode collapse) also
shrinks the distances, which is why the flag reads "possible".

Real datasets can contain the same event twice (the 2010 Z->mumu education file
repeats events), so some held-out events may be exact duplicates of training
events. Those are counted (``held_out_duplicate_fraction``) and left out of
the held-out distances, which would otherwise have a median of zero. When
fewer than two held-out events remain, the held-out median, the ratio and the
KS test are NaN (null in JSON), and only the copy rule can flag memorisation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.spatial
import scipy.stats

from cmsgen.engine.validation.multivariate import standardise
from cmsgen.engine.validation.univariate import finite_or_none

MEMORISATION_MAX_EVENTS = 20_000
MEDIAN_RATIO_THRESHOLD = 0.8
P_VALUE_THRESHOLD = 0.01
COPY_DISTANCE = 1e-6
COPY_FRACTION_THRESHOLD = 0.01


@dataclass
class MemorisationResult:
    """Nearest-training-event distances of generated and held-out events (standardised units)."""

    possible_memorisation: bool
    median_generated: float
    median_held_out: float
    median_ratio: float
    ks_statistic: float
    p_value: float
    copy_fraction: float
    held_out_duplicate_fraction: float
    n_train: int
    n_generated: int
    n_held_out: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {key: finite_or_none(v) if isinstance(v, float) else v for key, v in asdict(self).items()}


def nearest_neighbour_distances(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Return the Euclidean distance from each row of ``queries`` [m, d] to its nearest row of ``reference`` [n, d]."""
    tree = scipy.spatial.cKDTree(reference)
    distances, _ = tree.query(queries, k=1, workers=-1)
    return np.asarray(distances, dtype=np.float64)


def check_memorisation(
    train: np.ndarray,
    generated: np.ndarray,
    held_out: np.ndarray,
    max_events: int = MEMORISATION_MAX_EVENTS,
    median_ratio_threshold: float = MEDIAN_RATIO_THRESHOLD,
    p_value_threshold: float = P_VALUE_THRESHOLD,
    copy_distance: float = COPY_DISTANCE,
    copy_fraction_threshold: float = COPY_FRACTION_THRESHOLD,
    seed: int = 0,
) -> MemorisationResult:
    """Compare nearest-training-event distances of generated and held-out events with the rule of the module docstring.

    ``train``, ``generated`` and ``held_out`` are [n, d] matrices in physical
    units, and rows with a NaN or infinity are dropped. At most ``max_events``
    generated and held-out events are queried (a seeded random subsample),
    and the whole training set is the reference. Raises ValueError when fewer
    than 1 training, 2 generated or 2 held-out events remain.
    """
    train, generated, held_out = (_finite_rows(a) for a in (train, generated, held_out))
    if len(train) < 1 or len(generated) < 2 or len(held_out) < 2:
        raise ValueError(
            f"the memorisation check needs at least 1 training, 2 generated and 2 held-out events with finite "
            f"features, got {len(train)} training, {len(generated)} generated and {len(held_out)} held-out"
        )
    rng = np.random.default_rng(seed)
    if len(generated) > max_events:
        generated = generated[rng.choice(len(generated), max_events, replace=False)]
    if len(held_out) > max_events:
        held_out = held_out[rng.choice(len(held_out), max_events, replace=False)]
    train_scaled, generated_scaled, held_out_scaled = standardise(train, generated, held_out)

    distances_generated = nearest_neighbour_distances(train_scaled, generated_scaled)
    distances_held_out = nearest_neighbour_distances(train_scaled, held_out_scaled)
    duplicates = distances_held_out <= copy_distance
    held_out_duplicate_fraction = float(np.mean(duplicates))
    distances_held_out = distances_held_out[~duplicates]
    median_generated = float(np.median(distances_generated))
    copy_fraction = float(np.mean(distances_generated <= copy_distance))
    if len(distances_held_out) >= 2:
        median_held_out = float(np.median(distances_held_out))
        if median_held_out > 0:
            ratio = median_generated / median_held_out
        elif median_generated == 0:
            ratio = 0.0
        else:
            ratio = np.inf
        # alternative="greater" tests whether the CDF of the generated distances lies above the held-out one,
        # which means that the generated distances are smaller.
        ks = scipy.stats.ks_2samp(distances_generated, distances_held_out, alternative="greater", method="asymp")
        ks_statistic, p_value = float(ks.statistic), float(ks.pvalue)
    else:
        median_held_out = ratio = ks_statistic = p_value = float("nan")

    closer = ratio < median_ratio_threshold and p_value < p_value_threshold
    copies = copy_fraction > copy_fraction_threshold
    if copies:
        reason = f"{copy_fraction:.1%} of generated events are copies of training events"
    elif closer:
        reason = (
            f"generated events are closer to the training set than held-out events "
            f"(median ratio {ratio:.3g}, KS p = {p_value:.2g})"
        )
    elif math.isnan(median_held_out):
        reason = "fewer than 2 held-out events differ from every training event, so no distances can be compared"
    elif p_value < p_value_threshold:
        # A small p-value alone means that generated events sit significantly closer, but by too little to flag.
        reason = (
            f"below the memorisation threshold: generated events are closer to the training set than held-out "
            f"events (KS p = {p_value:.2g}), but their median ratio {ratio:.3g} is above {median_ratio_threshold:g}"
        )
    else:
        reason = f"no sign of memorisation (median ratio {ratio:.3g}, KS p = {p_value:.2g})"
    if held_out_duplicate_fraction > 0:
        reason += f"; {held_out_duplicate_fraction:.1%} of held-out real events duplicate a training event"
    return MemorisationResult(
        possible_memorisation=bool(closer or copies),
        median_generated=median_generated,
        median_held_out=median_held_out,
        median_ratio=float(ratio),
        ks_statistic=ks_statistic,
        p_value=p_value,
        copy_fraction=copy_fraction,
        held_out_duplicate_fraction=held_out_duplicate_fraction,
        n_train=len(train),
        n_generated=len(generated),
        n_held_out=len(held_out),
        reason=reason,
    )


def _finite_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.all(np.isfinite(x), axis=1)]
