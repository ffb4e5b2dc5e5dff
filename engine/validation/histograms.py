"""Histograms of real and generated events for plots and binned statistics.

Everything here is plain numbers (numpy arrays and dataclasses), so that the
TUI, the JSON report and the binned tests share one binning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Quantiles of the real sample that set a robust histogram range, so that a few
# outliers do not squeeze the bulk of the distribution into one bin.
ROBUST_QUANTILES = (0.001, 0.999)

# Invariant-mass window of the dimuon Z peak, in GeV.
Z_MASS_RANGE = (60.0, 120.0)


@dataclass(frozen=True)
class Histogram1D:
    """Counts of one sample on fixed edges.

    ``edges`` has shape [bins + 1], and ``counts`` and ``errors`` (Poisson,
    sqrt of the counts) have shape [bins]. ``underflow`` and ``overflow`` count
    the finite values outside the edges, and ``n_nonfinite`` the NaN and
    infinite values, which no bin contains.
    """

    edges: np.ndarray
    counts: np.ndarray
    errors: np.ndarray
    underflow: int
    overflow: int
    n_nonfinite: int

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def total(self) -> int:
        """Number of values inside the edges."""
        return int(self.counts.sum())

    def density(self) -> np.ndarray:
        """Return counts divided by the total and the bin width (integrates to 1 inside the edges)."""
        widths = np.diff(self.edges)
        total = max(self.total, 1)
        return self.counts / (total * widths)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "errors": self.errors.tolist(),
            "underflow": self.underflow,
            "overflow": self.overflow,
            "n_nonfinite": self.n_nonfinite,
        }


def histogram_1d(
    values: np.ndarray | Sequence[float],
    bins: int | np.ndarray = 50,
    range: tuple[float, float] | None = None,  # noqa: A002 - the numpy keyword
) -> Histogram1D:
    """Fill a histogram of ``values`` (shape [n]).

    ``bins`` is a number of equal bins or an array of edges. When ``bins`` is a
    number and ``range`` is None, the range is the robust range of ``values``
    (:func:`robust_range`). NaN and infinite values are counted only in
    ``n_nonfinite``.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    if isinstance(bins, np.ndarray):
        edges = np.asarray(bins, dtype=np.float64)
    else:
        low, high = range if range is not None else robust_range(finite)
        edges = np.linspace(low, high, int(bins) + 1)
    counts, _ = np.histogram(finite, bins=edges)
    counts = counts.astype(np.float64)
    return Histogram1D(
        edges=edges,
        counts=counts,
        errors=np.sqrt(counts),
        underflow=int(np.count_nonzero(finite < edges[0])),
        overflow=int(np.count_nonzero(finite > edges[-1])),
        n_nonfinite=int(array.size - finite.size),
    )


def robust_range(values: np.ndarray, quantiles: tuple[float, float] = ROBUST_QUANTILES) -> tuple[float, float]:
    """Return a (low, high) range that contains the given quantiles of the finite ``values``.

    An empty or constant sample gets a unit-wide range around its value, so
    that the edges are always strictly increasing.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = (float(q) for q in np.quantile(finite, quantiles))
    if not high > low:
        return (low - 0.5, high + 0.5)
    return (low, high)


def shared_edges(
    real: np.ndarray,
    kind: str,
    bins: int = 50,
    name: str = "",
    discrete_values: Sequence[float] | None = None,
    feature_set_name: str = "",
) -> np.ndarray:
    """Return bin edges for one variable, chosen from the real sample and the variable's kind.

    - kind ``phi`` or a name ending in ``phi``: [-pi, pi]. A name starting
      with ``delta`` gets [0, pi] when the real values are non-negative.
    - ``discrete``: one bin centred on each allowed value (or on each distinct
      real value when none are given).
    - ``mass`` of the ``dimuon`` feature set: the Z window, 60-120 GeV.
    - anything else: the robust range of the real sample.
    """
    real = np.asarray(real, dtype=np.float64)
    if kind == "discrete":
        values = np.unique(np.asarray(discrete_values if discrete_values else real[np.isfinite(real)], dtype=np.float64))
        if values.size == 0:
            values = np.array([0.0])
        if values.size == 1:
            return np.array([values[0] - 0.5, values[0] + 0.5])
        midpoints = 0.5 * (values[:-1] + values[1:])
        first = values[0] - (midpoints[0] - values[0])
        last = values[-1] + (values[-1] - midpoints[-1])
        return np.concatenate([[first], midpoints, [last]])
    if kind == "phi" or name.endswith("phi"):
        finite = real[np.isfinite(real)]
        if name.startswith("delta") and finite.size and finite.min() >= 0.0:
            return np.linspace(0.0, math.pi, bins + 1)
        return np.linspace(-math.pi, math.pi, bins + 1)
    if name == "mass" and feature_set_name == "dimuon":
        return np.linspace(*Z_MASS_RANGE, bins + 1)
    low, high = robust_range(real)
    return np.linspace(low, high, bins + 1)


@dataclass(frozen=True)
class HistogramComparison:
    """Real and generated histograms of one variable on shared edges.

    ``real`` and ``generated`` are normalised densities (each integrates to 1
    inside the edges), and ``real_err`` and ``generated_err`` their Poisson
    errors. ``ratio`` is generated / real per bin and ``ratio_err`` its
    propagated error, both NaN where the real bin is empty. ``real_counts``
    and ``generated_counts`` keep the raw counts for binned tests.
    """

    name: str
    edges: np.ndarray
    real: np.ndarray
    generated: np.ndarray
    real_err: np.ndarray
    generated_err: np.ndarray
    ratio: np.ndarray
    ratio_err: np.ndarray
    unit: str
    real_counts: np.ndarray
    generated_counts: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    def to_dict(self) -> dict[str, Any]:
        def clean(array: np.ndarray) -> list[float | None]:
            return [float(v) if np.isfinite(v) else None for v in array]

        return {
            "name": self.name,
            "unit": self.unit,
            "edges": self.edges.tolist(),
            "real": clean(self.real),
            "generated": clean(self.generated),
            "real_err": clean(self.real_err),
            "generated_err": clean(self.generated_err),
            "ratio": clean(self.ratio),
            "ratio_err": clean(self.ratio_err),
            "real_counts": self.real_counts.tolist(),
            "generated_counts": self.generated_counts.tolist(),
        }


def compare_histograms(
    name: str,
    real: np.ndarray,
    generated: np.ndarray,
    edges: np.ndarray,
    unit: str = "",
) -> HistogramComparison:
    """Histogram ``real`` and ``generated`` (shapes [n] and [m]) on ``edges`` and form their ratio."""
    real_hist = histogram_1d(real, bins=edges)
    generated_hist = histogram_1d(generated, bins=edges)
    widths = np.diff(edges)
    real_norm = max(real_hist.total, 1) * widths
    generated_norm = max(generated_hist.total, 1) * widths
    real_density = real_hist.counts / real_norm
    generated_density = generated_hist.counts / generated_norm
    real_err = real_hist.errors / real_norm
    generated_err = generated_hist.errors / generated_norm

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(real_density > 0, generated_density / real_density, np.nan)
        # Relative errors of two independent Poisson counts add in quadrature.
        relative = np.sqrt(
            np.where(real_hist.counts > 0, 1.0 / real_hist.counts, np.nan)
            + np.where(generated_hist.counts > 0, 1.0 / generated_hist.counts, 0.0)
        )
        ratio_err = ratio * relative
    return HistogramComparison(
        name=name,
        edges=np.asarray(edges, dtype=np.float64),
        real=real_density,
        generated=generated_density,
        real_err=real_err,
        generated_err=generated_err,
        ratio=ratio,
        ratio_err=ratio_err,
        unit=unit,
        real_counts=real_hist.counts,
        generated_counts=generated_hist.counts,
    )


def histogram_comparison_from_dict(data: Mapping[str, Any]) -> HistogramComparison:
    """Rebuild a :class:`HistogramComparison` from :meth:`HistogramComparison.to_dict` output.

    The input is typically a ``histogram`` entry of a loaded ``validation.json``,
    where null values become NaN.
    """

    def array(key: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in data[key]], dtype=np.float64)

    return HistogramComparison(
        name=str(data.get("name", "")),
        edges=np.asarray(data["edges"], dtype=np.float64),
        real=array("real"),
        generated=array("generated"),
        real_err=array("real_err"),
        generated_err=array("generated_err"),
        ratio=array("ratio"),
        ratio_err=array("ratio_err"),
        unit=str(data.get("unit", "")),
        real_counts=np.asarray(data.get("real_counts", []), dtype=np.float64),
        generated_counts=np.asarray(data.get("generated_counts", []), dtype=np.float64),
    )
