"""One-dimensional two-sample figures: KS, Wasserstein-1, chi2, Jensen-Shannon, separation power.

Each function compares a real sample with a generated one (1-D arrays in
physical units) and returns a :class:`MetricResult`. The result contains the
value, an error where the estimator has one and a p-value where the figure is
a test. The binned figures use the bin edges of :mod:`.histograms` plus an
underflow and an overflow bin, so that probability mass outside the plotted
range still counts.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats
from scipy.spatial.distance import jensenshannon

# Bootstrap defaults shared by the univariate figures.
DEFAULT_BOOTSTRAPS = 20
# Maximum sample size per side that a bootstrap resamples. The error is scaled
# back to the full sample sizes with the 1/n law of the variance (see wasserstein_1).
BOOTSTRAP_MAX_EVENTS = 50_000


@dataclass
class MetricResult:
    """One figure of merit.

    ``value`` is the metric and ``error`` its standard error, or None when the
    estimator has none. ``p_value`` is set for hypothesis tests only.
    ``details`` contains estimator-specific numbers (degrees of freedom,
    sample sizes, settings).
    """

    name: str
    value: float
    error: float | None = None
    p_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": finite_or_none(self.value),
            "error": finite_or_none(self.error),
            "p_value": finite_or_none(self.p_value),
            "details": {key: finite_or_none(v) if isinstance(v, float) else v for key, v in self.details.items()},
        }


def finite_or_none(value: float | None) -> float | None:
    """Return ``value`` as a float, or None when it is missing, NaN or infinite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _finite(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _check_sizes(real: np.ndarray, generated: np.ndarray, name: str) -> None:
    if real.size < 2 or generated.size < 2:
        raise ValueError(
            f"{name} needs at least 2 finite values per sample, got {real.size} real and {generated.size} generated"
        )


def ks_test(real: np.ndarray, generated: np.ndarray) -> MetricResult:
    """Run the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``, two-sided, method ``auto``).

    The value is the KS statistic D, the maximum distance between the
    empirical CDFs, in [0, 1]. The p-value is scipy's: exact for small samples,
    asymptotic otherwise. NaN and infinite values are dropped first. D has no
    error bar, but its 95 % critical value under the null is about
    1.36 * sqrt(1/n + 1/m).
    """
    real, generated = _finite(real), _finite(generated)
    _check_sizes(real, generated, "the KS test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        result = scipy.stats.ks_2samp(real, generated)
    # scipy warns when the exact p-value fails (ties, large samples) and falls back to the asymptotic one.
    method = "asymp" if any("asymp" in str(item.message) for item in caught) else "auto"
    return MetricResult(
        name="ks",
        value=float(result.statistic),
        p_value=float(result.pvalue),
        details={"n_real": int(real.size), "n_generated": int(generated.size), "method": method},
    )


def bootstrap_scale(n_real: int, n_generated: int, m_real: int, m_generated: int) -> float:
    """Return sqrt((1/n + 1/m) / (1/n' + 1/m')): the factor from subsample to full-sample standard error."""
    return math.sqrt((1.0 / n_real + 1.0 / n_generated) / (1.0 / m_real + 1.0 / m_generated))


def wasserstein_1(
    real: np.ndarray,
    generated: np.ndarray,
    n_bootstrap: int = DEFAULT_BOOTSTRAPS,
    seed: int = 0,
    bootstrap_max_events: int = BOOTSTRAP_MAX_EVENTS,
) -> MetricResult:
    """Compute the Wasserstein-1 (earth mover's) distance between the two empirical distributions.

    The value is ``scipy.stats.wasserstein_distance`` on the full samples, in
    the unit of the variable. The error is the standard deviation over
    ``n_bootstrap`` resamples (with replacement, both sides). When a side has
    more than ``bootstrap_max_events`` values, the resamples are drawn from a
    random subsample of that size. The error is then scaled to the full sizes
    by sqrt((1/n + 1/m) / (1/n' + 1/m')), which assumes that the estimator's
    variance falls as 1/n.
    """
    real, generated = _finite(real), _finite(generated)
    _check_sizes(real, generated, "Wasserstein-1")
    value = float(scipy.stats.wasserstein_distance(real, generated))
    rng = np.random.default_rng(seed)
    real_sub = real if real.size <= bootstrap_max_events else rng.choice(real, bootstrap_max_events, replace=False)
    generated_sub = (
        generated
        if generated.size <= bootstrap_max_events
        else rng.choice(generated, bootstrap_max_events, replace=False)
    )
    replicas = [
        scipy.stats.wasserstein_distance(
            rng.choice(real_sub, real_sub.size, replace=True),
            rng.choice(generated_sub, generated_sub.size, replace=True),
        )
        for _ in range(n_bootstrap)
    ]
    scale = bootstrap_scale(real.size, generated.size, real_sub.size, generated_sub.size)
    error = float(np.std(replicas, ddof=1)) * scale if n_bootstrap > 1 else None
    return MetricResult(
        name="w1",
        value=value,
        error=error,
        details={"n_bootstrap": n_bootstrap, "n_real": int(real.size), "n_generated": int(generated.size)},
    )


def binned_counts(real: np.ndarray, generated: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the counts of both samples on ``edges`` plus an underflow and an overflow bin (shape [bins + 2])."""
    outer = np.concatenate([[-np.inf], np.asarray(edges, dtype=np.float64), [np.inf]])
    real_counts, _ = np.histogram(_finite(real), bins=outer)
    generated_counts, _ = np.histogram(_finite(generated), bins=outer)
    return real_counts.astype(np.float64), generated_counts.astype(np.float64)


def chi2_homogeneity(real_counts: np.ndarray, generated_counts: np.ndarray) -> MetricResult:
    """Run the two-sample chi2 homogeneity test on two unweighted histograms with different totals.

    With totals N and M and counts n_i, m_i on the same bins,
    chi2 = sum_i (sqrt(M/N) n_i - sqrt(N/M) m_i)^2 / (n_i + m_i) over the bins
    where n_i + m_i > 0, with (bins used - 1) degrees of freedom. This is the
    chi2 test of homogeneity of the 2 x k contingency table of the counts.
    The value is chi2 / ndf and the p-value is the chi2 survival function.
    Bins with fewer than 5 expected counts make the p-value approximate, so
    their number is stored in ``details["low_count_bins"]``.
    """
    n = np.asarray(real_counts, dtype=np.float64)
    m = np.asarray(generated_counts, dtype=np.float64)
    total_n, total_m = n.sum(), m.sum()
    if total_n <= 0 or total_m <= 0:
        raise ValueError(f"the chi2 test needs a non-empty histogram on each side, got totals {total_n:g} and {total_m:g}")
    used = (n + m) > 0
    n, m = n[used], m[used]
    chi2 = float(np.sum((math.sqrt(total_m / total_n) * n - math.sqrt(total_n / total_m) * m) ** 2 / (n + m)))
    ndf = int(used.sum()) - 1
    expected_n = (n + m) * total_n / (total_n + total_m)
    expected_m = (n + m) * total_m / (total_n + total_m)
    low_count = int(np.count_nonzero((expected_n < 5) | (expected_m < 5)))
    p_value = float(scipy.stats.chi2.sf(chi2, ndf)) if ndf > 0 else 1.0
    return MetricResult(
        name="chi2",
        value=chi2 / ndf if ndf > 0 else 0.0,
        p_value=p_value,
        details={"chi2": chi2, "ndf": ndf, "low_count_bins": low_count},
    )


def _poisson_bootstrap(
    statistic: Any, real_counts: np.ndarray, generated_counts: np.ndarray, n_bootstrap: int, seed: int
) -> float | None:
    """Return the standard deviation of ``statistic`` over Poisson fluctuations of both histograms."""
    if n_bootstrap < 2:
        return None
    rng = np.random.default_rng(seed)
    replicas = [
        statistic(rng.poisson(real_counts).astype(np.float64), rng.poisson(generated_counts).astype(np.float64))
        for _ in range(n_bootstrap)
    ]
    return float(np.std(replicas, ddof=1))


def _jsd_value(real_counts: np.ndarray, generated_counts: np.ndarray) -> float:
    if real_counts.sum() <= 0 or generated_counts.sum() <= 0:
        return float("nan")
    return float(jensenshannon(real_counts, generated_counts, base=2) ** 2)


def jensen_shannon(
    real_counts: np.ndarray, generated_counts: np.ndarray, n_bootstrap: int = DEFAULT_BOOTSTRAPS, seed: int = 0
) -> MetricResult:
    """Compute the Jensen-Shannon divergence of two histograms, in bits (base 2), in [0, 1].

    The value is ``scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2``,
    because scipy returns the JS *distance*, whose square is the divergence.
    scipy normalises each histogram. The error is the standard deviation over
    ``n_bootstrap`` Poisson fluctuations of every bin of both histograms.
    """
    real_counts = np.asarray(real_counts, dtype=np.float64)
    generated_counts = np.asarray(generated_counts, dtype=np.float64)
    return MetricResult(
        name="jsd",
        value=_jsd_value(real_counts, generated_counts),
        error=_poisson_bootstrap(_jsd_value, real_counts, generated_counts, n_bootstrap, seed),
        details={"base": 2, "n_bootstrap": n_bootstrap},
    )


def _separation_value(real_counts: np.ndarray, generated_counts: np.ndarray) -> float:
    real_total, generated_total = real_counts.sum(), generated_counts.sum()
    if real_total <= 0 or generated_total <= 0:
        return float("nan")
    p = real_counts / real_total
    q = generated_counts / generated_total
    used = (p + q) > 0
    return float(0.5 * np.sum((p[used] - q[used]) ** 2 / (p[used] + q[used])))


def separation_power(
    real_counts: np.ndarray, generated_counts: np.ndarray, n_bootstrap: int = DEFAULT_BOOTSTRAPS, seed: int = 0
) -> MetricResult:
    """Compute the histogram separation power of the CaloChallenge: 0.5 * sum_i (p_i - q_i)^2 / (p_i + q_i).

    ``p`` and ``q`` are the histograms normalised to unit sum. The value is 0
    for identical shapes and 1 for disjoint ones. The error is the standard
    deviation over ``n_bootstrap`` Poisson fluctuations of every bin of both
    histograms.
    """
    real_counts = np.asarray(real_counts, dtype=np.float64)
    generated_counts = np.asarray(generated_counts, dtype=np.float64)
    return MetricResult(
        name="separation_power",
        value=_separation_value(real_counts, generated_counts),
        error=_poisson_bootstrap(_separation_value, real_counts, generated_counts, n_bootstrap, seed),
        details={"n_bootstrap": n_bootstrap},
    )
