"""Validation orchestration: every figure, its real-versus-real baseline and a verdict.

:func:`validate_arrays` compares a real and a generated feature matrix and,
optionally, the training matrix for the memorisation check.
:func:`validate_run` does the same for a run directory and writes
``validation.json`` there. The JSON layout is documented in
``docs/validation-schema.md``, and :meth:`ValidationReport.to_markdown`
renders a logbook entry.

Baseline: the real sample is split in two random halves, and every figure
is computed on half A versus half B as well. The baseline is measured at half
the real sample size. Estimators biased upwards at finite size (W1, JSD,
separation power, FPD) therefore give a baseline a little above the noise
floor of the full-size comparison, which makes the pass rule slightly lenient.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cmsgen.engine.errors import ConfigError, NoEventsError
from cmsgen.engine.validation import memorisation as memorisation_module
from cmsgen.engine.validation import multivariate, physics, univariate
from cmsgen.engine.validation.histograms import HistogramComparison, compare_histograms, shared_edges
from cmsgen.engine.validation.physics import FeatureSetLike
from cmsgen.engine.validation.summary import SCHEMA_VERSION, report_to_markdown
from cmsgen.engine.validation.univariate import MetricResult, finite_or_none

log = logging.getLogger(__name__)

VERDICTS = ("pass", "warn", "fail", "skipped")
# Minimum number of events per sample for a report (each baseline half gets half of them).
MIN_EVENTS = 20
# Below this many real or generated events the report carries a "small_sample" warning. The
# baseline halves then have fewer than 500 events each: the classifier AUC of a half has an
# error of about 0.03 or more, and binned figures get fewer than 22 bins (see figure_bins).
SMALL_SAMPLE_EVENTS = 1_000
# Minimum number of bins that figure_bins gives a non-discrete variable.
MIN_BINS = 5
# Maximum number of events that validate_run generates. Ten million dimuon events take 560 MB as float64
# features, and the observables, the baseline halves and the sampling buffers several times that.
MAX_GENERATED_EVENTS = 10_000_000

# Above this fraction of held-out events that duplicate training events, the memorisation verdict is
# "skipped", unless some generated events are exact copies of training events.
HELD_OUT_DUPLICATE_LIMIT = 0.5

ProgressCallback = Callable[[float, str], None]


@dataclass
class ValidationSettings:
    """Estimator defaults and pass/warn/fail thresholds, each settable in the run's ``[validation]`` table.

    Distance figures (W1, JSD, separation power, FPD, KPD, correlation norm,
    classifier AUC - 0.5) pass when value <= ``pass_factor`` x baseline +
    error and warn when value <= ``warn_factor`` x baseline + error, where the
    error is the quadrature sum of the figure's and the baseline's errors.
    Tests (KS, chi2) pass when p >= ``p_value_pass`` and warn when
    p >= ``p_value_warn``. A physicality check passes when the generated
    failure fraction exceeds the real one by at most ``physicality_pass`` and
    warns up to ``physicality_warn``. The Z peak passes when every pull
    (position, gamma, sigma) is within ``z_pull_pass`` and warns within
    ``z_pull_warn``. ``bins`` is the maximum number of bins of the binned
    figures, which :func:`figure_bins` lowers for small samples.
    """

    bins: int = 50
    n_bootstrap: int = univariate.DEFAULT_BOOTSTRAPS
    pass_factor: float = 2.0
    warn_factor: float = 5.0
    p_value_pass: float = 0.05
    p_value_warn: float = 0.001
    physicality_pass: float = 0.001
    physicality_warn: float = 0.01
    z_pull_pass: float = 2.0
    z_pull_warn: float = 5.0
    z_fit_bins: int = 60
    fpd_min_samples: int = multivariate.FPD_MIN_SAMPLES
    fpd_max_samples: int = multivariate.FPD_MAX_SAMPLES
    fpd_points: int = multivariate.FPD_POINTS
    fpd_batches: int = multivariate.FPD_BATCHES
    kpd_batches: int = multivariate.KPD_BATCHES
    kpd_batch_size: int = multivariate.KPD_BATCH_SIZE
    classifier_max_events: int = multivariate.CLASSIFIER_MAX_EVENTS
    classifier_epochs: int = multivariate.CLASSIFIER_EPOCHS
    memorisation_max_events: int = memorisation_module.MEMORISATION_MAX_EVENTS
    memorisation_median_ratio: float = memorisation_module.MEDIAN_RATIO_THRESHOLD
    memorisation_p_value: float = memorisation_module.P_VALUE_THRESHOLD

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ValidationSettings:
        """Build settings from a ``[validation]`` table.

        Raises ``ConfigError`` on an unknown key, a value that is not a positive
        finite number (an integer for integer fields), or inconsistent thresholds.
        """
        settings = cls()
        if not values:
            return settings
        known = {item.name: item for item in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"validation.{key} is not a known key: expected one of {', '.join(sorted(known))}")
            default = getattr(settings, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"validation.{key} = {value!r} is invalid: expected a number")
            if isinstance(default, int) and not float(value).is_integer():
                raise ConfigError(f"validation.{key} = {value!r} is invalid: expected an integer")
            if not math.isfinite(float(value)) or value <= 0:
                raise ConfigError(f"validation.{key} = {value!r} is invalid: expected a number > 0")
            if key in FRACTION_SETTINGS and value > 1:
                raise ConfigError(f"validation.{key} = {value!r} is invalid: a probability or fraction is at most 1")
            setattr(settings, key, int(value) if isinstance(default, int) else float(value))
        for strict, lenient, relation in ORDERED_SETTINGS:
            strict_value, lenient_value = getattr(settings, strict), getattr(settings, lenient)
            wrong = lenient_value < strict_value if relation == ">=" else lenient_value > strict_value
            if wrong:
                raise ConfigError(
                    f"validation.{lenient} = {lenient_value} is invalid: it must be {relation} {strict} ({strict_value})"
                )
        return settings

    def to_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


# Settings that are probabilities or fractions of events, so at most 1.
FRACTION_SETTINGS = frozenset({"p_value_pass", "p_value_warn", "physicality_pass", "physicality_warn", "memorisation_p_value"})
# (stricter setting, more lenient setting, relation the lenient one must have to the stricter one).
ORDERED_SETTINGS = (
    ("pass_factor", "warn_factor", ">="),
    ("p_value_pass", "p_value_warn", "<="),
    ("physicality_pass", "physicality_warn", ">="),
    ("z_pull_pass", "z_pull_warn", ">="),
    ("fpd_min_samples", "fpd_max_samples", ">="),
)


@dataclass
class Figure:
    """One metric on real versus generated, the same metric on the real halves, and the verdict."""

    result: MetricResult
    baseline: MetricResult | None
    verdict: str
    rule: str

    def to_dict(self) -> dict[str, Any]:
        data = self.result.to_dict()
        data["baseline"] = self.baseline.to_dict() if self.baseline is not None else None
        data["verdict"] = self.verdict
        data["rule"] = self.rule
        return data


@dataclass
class VariableReport:
    """The univariate figures and histograms of one feature column or physics observable."""

    name: str
    source: str  # "column" or "observable"
    kind: str
    unit: str
    figures: dict[str, Figure]
    histogram: HistogramComparison

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "unit": self.unit,
            "figures": {key: figure.to_dict() for key, figure in self.figures.items()},
            "verdict": worst_verdict(figure.verdict for figure in self.figures.values()),
            "histogram": self.histogram.to_dict(),
        }


@dataclass
class ValidationReport:
    """Everything that validation measured. :meth:`to_dict` returns the ``validation.json`` content.

    ``timings`` (seconds per stage) is kept out of :meth:`to_dict` so that the
    same inputs and seed give the same JSON apart from ``created``.
    """

    inputs: dict[str, Any]
    settings: ValidationSettings
    variables: list[VariableReport]
    multivariate: dict[str, Figure]
    physics: dict[str, Any]
    memorisation: dict[str, Any]
    warnings: list[dict[str, str]] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    timings: dict[str, float] = field(default_factory=dict)

    def verdicts(self) -> list[str]:
        """Return the verdict of every figure, check and fit, in report order."""
        found = [figure.verdict for variable in self.variables for figure in variable.figures.values()]
        found += [figure.verdict for figure in self.multivariate.values()]
        found.append(self.physics["z_peak"]["verdict"])
        found += [check["verdict"] for check in self.physics["physicality"]]
        found.append(self.memorisation["verdict"])
        return found

    def summary(self) -> dict[str, Any]:
        verdicts = self.verdicts()
        counts = {verdict: verdicts.count(verdict) for verdict in VERDICTS}
        return {**counts, "verdict": worst_verdict(verdicts)}

    def histograms(self) -> list[HistogramComparison]:
        return [variable.histogram for variable in self.variables]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "inputs": self.inputs,
            "settings": self.settings.to_dict(),
            "summary": self.summary(),
            "warnings": self.warnings,
            "univariate": [variable.to_dict() for variable in self.variables],
            "multivariate": {key: figure.to_dict() for key, figure in self.multivariate.items()},
            "physics": self.physics,
            "memorisation": self.memorisation,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_markdown(self) -> str:
        return report_to_markdown(self.to_dict())


def worst_verdict(verdicts: Any) -> str:
    """Return the worst of the given verdicts (fail > warn > pass); "skipped" when none was judged."""
    found = set(verdicts)
    for verdict in ("fail", "warn", "pass"):
        if verdict in found:
            return verdict
    return "skipped"


def judge_distance(result: MetricResult, baseline: MetricResult | None, settings: ValidationSettings, offset: float = 0.0) -> tuple[str, str]:
    """Return the verdict and rule text of a distance figure measured against its baseline.

    ``offset`` is the value of a perfect match (0.5 for an AUC); the figure is
    value - offset and the baseline max(baseline - offset, 0).
    """
    rule = f"value - {offset:g} <= {settings.pass_factor:g} x baseline + error (warn: {settings.warn_factor:g} x)"
    if baseline is None or not math.isfinite(result.value) or not math.isfinite(baseline.value):
        return "skipped", rule
    excess = result.value - offset
    baseline_excess = max(baseline.value - offset, 0.0)
    error = math.hypot(result.error or 0.0, baseline.error or 0.0)
    if excess <= settings.pass_factor * baseline_excess + error:
        return "pass", rule
    if excess <= settings.warn_factor * baseline_excess + error:
        return "warn", rule
    return "fail", rule


def judge_p_value(result: MetricResult, settings: ValidationSettings) -> tuple[str, str]:
    """Return the verdict and rule text of a test from its p-value."""
    rule = f"p >= {settings.p_value_pass:g} (warn: p >= {settings.p_value_warn:g})"
    if result.p_value is None or not math.isfinite(result.p_value):
        return "skipped", rule
    if result.p_value >= settings.p_value_pass:
        return "pass", rule
    if result.p_value >= settings.p_value_warn:
        return "warn", rule
    return "fail", rule


def _observable_kind(name: str) -> str:
    """Guess the kind of a derived observable from its name: ``phi``, ``mass``, ``pt``, ``eta`` or ``real``."""
    if "phi" in name:
        return "phi"
    if name == "mass" or name.endswith("mass"):
        return "mass"
    if "pt" in name:
        return "pt"
    if "eta" in name or "rapidity" in name:
        return "eta"
    return "real"


def unit_of(name: str, kind: str) -> str:
    """Return the unit of a variable from its kind and name: GeV, rad or "" for dimensionless."""
    if kind in ("pt", "mass") or name == "mass" or name.endswith(("_mass", "_pt", "_energy", "_E")):
        return "GeV"
    if kind == "phi":
        return "rad"
    return ""


def figure_bins(max_bins: int, n_half: int) -> int:
    """Return the number of bins of the binned figures: ``max_bins``, capped at sqrt(n_half).

    ``n_half`` is the size of the smaller baseline half. With about sqrt(n)
    bins a half fills each bin with about sqrt(n) events, so the binned
    baselines (chi2, JSD, separation power) stay away from their maximum:
    25 events in 50 bins give a JSD baseline near 1. At least ``MIN_BINS``.
    """
    return max(MIN_BINS, min(max_bins, math.isqrt(max(n_half, 0))))


def sample_size_warnings(n_real: int, n_generated: int, source: str) -> list[dict[str, str]]:
    """Return the ``small_sample`` warning when either sample has fewer than ``SMALL_SAMPLE_EVENTS`` events.

    ``source`` names where the real events come from and is used in the advice.
    """
    smaller = min(n_real, n_generated)
    if smaller >= SMALL_SAMPLE_EVENTS:
        return []
    if n_real <= n_generated:
        if source == "run":
            advice = "raise training.test_fraction in the run config and train again"
        else:
            advice = "give more real events"
        what = f"the real sample has only {n_real} events"
    else:
        advice = "generate more events (--events)" if source == "run" else "give more generated events"
        what = f"the generated sample has only {n_generated} events"
    return [
        {
            "code": "small_sample",
            "message": (
                f"{what}, fewer than {SMALL_SAMPLE_EVENTS}, and the baseline halves have {n_real // 2} events "
                f"each, so the verdicts are unreliable; {advice}"
            ),
        }
    ]


@dataclass
class _Variable:
    name: str
    source: str
    kind: str
    real: np.ndarray
    generated: np.ndarray
    real_a: np.ndarray
    real_b: np.ndarray


def _collect_variables(
    real: np.ndarray, generated: np.ndarray, halves: tuple[np.ndarray, np.ndarray], feature_set: FeatureSetLike
) -> tuple[list[_Variable], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return every column and observable, plus the observables of the real and generated samples."""
    observables_real = dict(feature_set.observables(real))
    observables_generated = dict(feature_set.observables(generated))
    index_a, index_b = halves
    variables = [
        _Variable(name, "column", kind, real[:, i], generated[:, i], real[index_a, i], real[index_b, i])
        for i, (name, kind) in enumerate(zip(feature_set.columns, feature_set.kinds))
    ]
    for name, values in observables_real.items():
        if name in feature_set.columns or name not in observables_generated:
            continue
        values = np.asarray(values, dtype=np.float64)
        variables.append(
            _Variable(
                name,
                "observable",
                _observable_kind(name),
                values,
                np.asarray(observables_generated[name], dtype=np.float64),
                values[index_a],
                values[index_b],
            )
        )
    return variables, observables_real, observables_generated


def _univariate_figures(variable: _Variable, edges: np.ndarray, settings: ValidationSettings, seed: int) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}

    def both(function: Callable[[np.ndarray, np.ndarray], MetricResult]) -> tuple[MetricResult, MetricResult]:
        return function(variable.real, variable.generated), function(variable.real_a, variable.real_b)

    ks, ks_base = both(univariate.ks_test)
    figures["ks"] = Figure(ks, ks_base, *judge_p_value(ks, settings))

    w1, w1_base = both(lambda a, b: univariate.wasserstein_1(a, b, settings.n_bootstrap, seed))
    figures["w1"] = Figure(w1, w1_base, *judge_distance(w1, w1_base, settings))

    counts = univariate.binned_counts(variable.real, variable.generated, edges)
    counts_base = univariate.binned_counts(variable.real_a, variable.real_b, edges)
    chi2, chi2_base = univariate.chi2_homogeneity(*counts), univariate.chi2_homogeneity(*counts_base)
    figures["chi2"] = Figure(chi2, chi2_base, *judge_p_value(chi2, settings))

    jsd = univariate.jensen_shannon(*counts, settings.n_bootstrap, seed)
    jsd_base = univariate.jensen_shannon(*counts_base, settings.n_bootstrap, seed)
    figures["jsd"] = Figure(jsd, jsd_base, *judge_distance(jsd, jsd_base, settings))

    power = univariate.separation_power(*counts, settings.n_bootstrap, seed)
    power_base = univariate.separation_power(*counts_base, settings.n_bootstrap, seed)
    figures["separation_power"] = Figure(power, power_base, *judge_distance(power, power_base, settings))
    return figures


def _multivariate_figures(
    real: np.ndarray, generated: np.ndarray, halves: tuple[np.ndarray, np.ndarray], settings: ValidationSettings, seed: int,
    progress: Callable[[str], None],
) -> tuple[dict[str, Figure], dict[str, float]]:
    real_scaled, generated_scaled = multivariate.standardise(real, generated)
    half_a, half_b = real_scaled[halves[0]], real_scaled[halves[1]]
    figures: dict[str, Figure] = {}
    timings: dict[str, float] = {}
    metrics: list[tuple[str, Callable[[np.ndarray, np.ndarray], MetricResult], float]] = [
        (
            "fpd",
            lambda a, b: multivariate.frechet_physics_distance(
                a, b, settings.fpd_min_samples, settings.fpd_max_samples, settings.fpd_points, settings.fpd_batches, seed
            ),
            0.0,
        ),
        (
            "kpd",
            lambda a, b: multivariate.kernel_physics_distance(
                a, b, settings.kpd_batches, settings.kpd_batch_size, multivariate.KPD_DEGREE, seed
            ),
            0.0,
        ),
        (
            "classifier_auc",
            lambda a, b: multivariate.classifier_two_sample_test(
                a, b, settings.classifier_max_events, settings.classifier_epochs, multivariate.CLASSIFIER_HIDDEN, seed
            ),
            0.5,
        ),
        ("correlation_frobenius", lambda a, b: multivariate.correlation_difference(a, b, settings.n_bootstrap, seed), 0.0),
    ]
    for name, function, offset in metrics:
        progress(name)
        start = time.perf_counter()
        try:
            result = function(real_scaled, generated_scaled)
            baseline = function(half_a, half_b)
        except ValueError as error:
            log.warning("%s skipped: %s", name, error)
            result = MetricResult(name=name, value=float("nan"), details={"skipped": str(error)})
            baseline = None
        figures[name] = Figure(result, baseline, *judge_distance(result, baseline, settings, offset))
        timings[name] = time.perf_counter() - start
    return figures, timings


def _z_peak_section(
    observables_real: Mapping[str, np.ndarray], observables_generated: Mapping[str, np.ndarray], feature_set: FeatureSetLike,
    settings: ValidationSettings,
) -> dict[str, Any]:
    if "mass" not in observables_real or "mass" not in observables_generated:
        return {"verdict": "skipped", "reason": f"feature set {feature_set.name!r} has no invariant-mass observable"}
    real_fit = physics.fit_z_peak(observables_real["mass"], bins=settings.z_fit_bins)
    generated_fit = physics.fit_z_peak(observables_generated["mass"], bins=settings.z_fit_bins)
    pulls = physics.compare_z_peaks(real_fit, generated_fit)
    section: dict[str, Any] = {
        "real": real_fit.to_dict(),
        "generated": generated_fit.to_dict(),
        "pulls": {key: finite_or_none(value) for key, value in pulls.items()},
        "rule": f"|pull| <= {settings.z_pull_pass:g} for position, gamma and sigma (warn: {settings.z_pull_warn:g})",
    }
    if real_fit.status != "ok" or generated_fit.status != "ok":
        section["verdict"] = "skipped" if real_fit.status != "ok" else "fail"
        section["reason"] = "; ".join(
            f"{label} fit {fit.status.replace('_', ' ')}: {fit.message}"
            for label, fit in (("real", real_fit), ("generated", generated_fit))
            if fit.status != "ok"
        )
        return section
    notes = [f"{label} fit: {fit.message}" for label, fit in (("real", real_fit), ("generated", generated_fit)) if fit.message]
    if notes:
        section["reason"] = "; ".join(notes)
    def judge(pull: float) -> str:
        if abs(pull) <= settings.z_pull_pass:
            return "pass"
        return "warn" if abs(pull) <= settings.z_pull_warn else "fail"

    # Each parameter gets its own verdict for the table rows, and the section that of the largest pull.
    section["verdicts"] = {key: judge(value) for key, value in pulls.items() if value is not None}
    section["verdict"] = judge(max(abs(value) for value in pulls.values() if value is not None))
    return section


def _physicality_section(
    real: np.ndarray, generated: np.ndarray, feature_set: FeatureSetLike,
    observables_real: Mapping[str, np.ndarray], observables_generated: Mapping[str, np.ndarray], settings: ValidationSettings,
) -> list[dict[str, Any]]:
    real_checks = physics.physicality_checks(real, feature_set, observables_real)
    generated_checks = physics.physicality_checks(generated, feature_set, observables_generated)
    section = []
    for real_check, generated_check in zip(real_checks, generated_checks):
        excess = generated_check.fraction_failed - real_check.fraction_failed
        if excess <= settings.physicality_pass:
            verdict = "pass"
        elif excess <= settings.physicality_warn:
            verdict = "warn"
        else:
            verdict = "fail"
        section.append(
            {
                "name": real_check.name,
                "description": real_check.description,
                "columns": real_check.columns,
                "real": {"n_events": real_check.n_events, "n_failed": real_check.n_failed, "fraction_failed": real_check.fraction_failed},
                "generated": {
                    "n_events": generated_check.n_events,
                    "n_failed": generated_check.n_failed,
                    "fraction_failed": generated_check.fraction_failed,
                },
                "verdict": verdict,
                "rule": f"generated fraction <= real fraction + {settings.physicality_pass:g} (warn: + {settings.physicality_warn:g})",
            }
        )
    return section


def _subsample(x: np.ndarray, max_events: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_events is None or len(x) <= max_events:
        return x
    return x[np.sort(rng.choice(len(x), max_events, replace=False))]


def validate_arrays(
    real: np.ndarray,
    generated: np.ndarray,
    feature_set: FeatureSetLike,
    train: np.ndarray | None = None,
    seed: int = 0,
    thresholds: Mapping[str, Any] | ValidationSettings | None = None,
    max_events: int | None = None,
    progress: ProgressCallback | None = None,
    source: str = "files",
) -> ValidationReport:
    """Compute every figure of generated versus real events, with baselines and verdicts.

    ``real`` and ``generated`` are [n, d] and [m, d] feature matrices in
    physical units with the feature set's columns. ``train`` ([k, d]) enables
    the memorisation check. ``thresholds`` overrides :class:`ValidationSettings`
    fields. ``max_events`` caps each sample by a seeded random subsample.
    ``source`` ("run" or "files") only selects the advice of a small-sample warning.
    ``progress(fraction, message)`` is called as each stage starts and once
    more at the end. Every random choice derives from ``seed``, so equal
    inputs give an equal report.
    """
    settings = thresholds if isinstance(thresholds, ValidationSettings) else ValidationSettings.from_mapping(thresholds)
    columns = tuple(feature_set.columns)
    real = np.asarray(real, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    samples = [("real", real), ("generated", generated)]
    if train is not None:
        samples.append(("train", np.asarray(train)))
    for label, array in samples:
        if array.ndim != 2 or array.shape[1] != len(columns):
            raise ConfigError(
                f"the {label} events have shape {array.shape}, but feature set {feature_set.name!r} has "
                f"{len(columns)} columns ({', '.join(columns)}); pass events of that feature set"
            )
    if max_events is not None and max_events < MIN_EVENTS:
        raise ConfigError(f"max_events = {max_events} is invalid: expected at least {MIN_EVENTS}")
    rng = np.random.default_rng(seed)
    real = _subsample(real, max_events, rng)
    generated = _subsample(generated, max_events, rng)
    if len(real) < MIN_EVENTS or len(generated) < MIN_EVENTS:
        raise NoEventsError(
            f"validation needs at least {MIN_EVENTS} real and {MIN_EVENTS} generated events, got {len(real)} and "
            f"{len(generated)}; use a larger test split or generate more events"
        )

    permutation = rng.permutation(len(real))
    halves = (np.sort(permutation[: len(real) // 2]), np.sort(permutation[len(real) // 2 :]))
    bins = figure_bins(settings.bins, len(halves[0]))
    variables, observables_real, observables_generated = _collect_variables(real, generated, halves, feature_set)
    discrete_values = getattr(feature_set, "discrete_values", None) or {}
    # One stage per variable, four multivariate figures, two physics stages and the memorisation check.
    n_stages = len(variables) + 4 + 2 + 1
    stage = 0

    def step(message: str) -> None:
        nonlocal stage
        if progress is not None:
            progress(stage / n_stages, message)
        stage += 1

    log.info("validating %d generated against %d real events of %s (seed %d)", len(generated), len(real), feature_set.name, seed)
    timings: dict[str, float] = {}
    variable_reports = []
    for variable in variables:
        step(f"univariate figures of {variable.name}")
        start = time.perf_counter()
        edges = shared_edges(
            variable.real, variable.kind, bins, variable.name, discrete_values.get(variable.name), feature_set.name
        )
        figures = _univariate_figures(variable, edges, settings, seed)
        histogram = compare_histograms(variable.name, variable.real, variable.generated, edges, unit_of(variable.name, variable.kind))
        variable_reports.append(
            VariableReport(variable.name, variable.source, variable.kind, unit_of(variable.name, variable.kind), figures, histogram)
        )
        timings[f"univariate:{variable.name}"] = time.perf_counter() - start

    multivariate_figures, multivariate_timings = _multivariate_figures(
        real, generated, halves, settings, seed, lambda name: step(f"multivariate figure {name}")
    )
    timings.update({f"multivariate:{key}": value for key, value in multivariate_timings.items()})

    step("Z peak fit")
    start = time.perf_counter()
    physics_section: dict[str, Any] = {"z_peak": _z_peak_section(observables_real, observables_generated, feature_set, settings)}
    timings["physics:z_peak"] = time.perf_counter() - start
    step("physicality checks")
    start = time.perf_counter()
    physics_section["physicality"] = _physicality_section(
        real, generated, feature_set, observables_real, observables_generated, settings
    )
    timings["physics:physicality"] = time.perf_counter() - start

    step("memorisation check")
    start = time.perf_counter()
    memorisation_section = _memorisation_section(train, generated, real, settings, seed)
    timings["memorisation"] = time.perf_counter() - start
    if progress is not None:
        progress(1.0, "validation finished")

    inputs = {
        "feature_set": feature_set.name,
        "columns": list(columns),
        "n_real": len(real),
        "n_generated": len(generated),
        "n_train": None if train is None else len(train),
        "n_baseline_halves": [len(halves[0]), len(halves[1])],
        "bins": bins,
        "seed": seed,
        "max_events": max_events,
    }
    report = ValidationReport(
        inputs,
        settings,
        variable_reports,
        multivariate_figures,
        physics_section,
        memorisation_section,
        warnings=sample_size_warnings(len(real), len(generated), source),
    )
    report.timings = timings
    log.info("validation finished: %s", report.summary())
    return report


def _memorisation_section(
    train: np.ndarray | None, generated: np.ndarray, held_out: np.ndarray, settings: ValidationSettings, seed: int
) -> dict[str, Any]:
    rule = (
        f"fail when the median distance ratio < {settings.memorisation_median_ratio:g} with one-sided KS "
        f"p < {settings.memorisation_p_value:g}, or more than "
        f"{memorisation_module.COPY_FRACTION_THRESHOLD:.0%} exact copies"
    )
    if train is None:
        return {"verdict": "skipped", "reason": "no training events were given", "rule": rule}
    result = memorisation_module.check_memorisation(
        np.asarray(train, dtype=np.float64),
        generated,
        held_out,
        max_events=settings.memorisation_max_events,
        median_ratio_threshold=settings.memorisation_median_ratio,
        p_value_threshold=settings.memorisation_p_value,
        seed=seed,
    )
    section = result.to_dict()
    section["verdict"] = "fail" if result.possible_memorisation else "pass"
    if result.held_out_duplicate_fraction > HELD_OUT_DUPLICATE_LIMIT and not result.copy_fraction > 0:
        # The distance comparison needs held-out events that the model has not seen.
        section["verdict"] = "skipped"
        section["reason"] = (
            f"{result.held_out_duplicate_fraction:.0%} of held-out real events duplicate a training event, so "
            "the real splits are not independent and the distance comparison is not meaningful. No generated "
            "event is an exact copy of a training event"
        )
    elif math.isnan(result.median_held_out) and not result.possible_memorisation:
        section["verdict"] = "skipped"
    section["rule"] = rule
    return section


def check_event_count(n_events: int | None, option: str = "--events") -> None:
    """Raise ConfigError unless ``n_events`` is None or in [MIN_EVENTS, MAX_GENERATED_EVENTS]."""
    if n_events is not None and not MIN_EVENTS <= n_events <= MAX_GENERATED_EVENTS:
        raise ConfigError(
            f"{option} {n_events} is invalid: expected {MIN_EVENTS} to {MAX_GENERATED_EVENTS:,} events"
        )


def validate_run(
    run_dir: str | Path,
    n_events: int | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    checkpoint: str = "best",
    write: bool = True,
) -> ValidationReport:
    """Validate a training run and, unless ``write`` is False, write ``validation.json`` into its directory.

    The run's test split is the real sample, and its train split feeds the
    memorisation check. ``n_events`` events (default: the size of the test
    split, at most ``MAX_GENERATED_EVENTS``) are generated from ``checkpoint``
    with ``seed``. A run without a best checkpoint is sampled from its last
    one, and ``inputs.checkpoint`` records the checkpoint that was sampled.
    Thresholds come from the run config's ``[validation]`` table.
    """
    from cmsgen.engine.training.runs import RunDirectory, write_json_atomic

    run = RunDirectory(run_dir)
    config = run.config()
    feature_set = run.feature_set()
    stored_columns = run.columns()
    if tuple(stored_columns) != tuple(feature_set.columns):
        raise ConfigError(
            f"the data splits of {run.path} have columns {', '.join(stored_columns)}, but feature set "
            f"{feature_set.name!r} has {', '.join(feature_set.columns)}; the run directory is inconsistent"
        )
    settings = ValidationSettings.from_mapping(config.get("validation"))
    real = run.load_split("test")
    train = run.load_split("train")
    check_event_count(n_events)
    count = n_events if n_events is not None else min(len(real), MAX_GENERATED_EVENTS)
    used_checkpoint = run.resolve_checkpoint(checkpoint)
    if used_checkpoint != checkpoint:
        log.warning("%s has no %s checkpoint, so the report validates the %s one", run.path, checkpoint, used_checkpoint)
    if progress is not None:
        progress(0.0, f"generating {count} events from the {used_checkpoint} checkpoint")
    start = time.perf_counter()
    generated = run.sample(count, seed=seed, checkpoint=used_checkpoint)
    sampling_seconds = time.perf_counter() - start

    def scaled_progress(fraction: float, message: str) -> None:
        if progress is not None:
            progress(0.05 + 0.95 * fraction, message)

    report = validate_arrays(
        real, generated, feature_set, train=train, seed=seed, thresholds=settings, progress=scaled_progress, source="run"
    )
    report.inputs["run"] = run.name
    report.inputs["checkpoint"] = used_checkpoint
    report.inputs["checkpoint_requested"] = checkpoint
    report.inputs["model"] = config.get("model", {}).get("family")
    report.timings["sampling"] = sampling_seconds
    if write:
        write_json_atomic(report.to_dict(), run.path / "validation.json")
        log.info("wrote %s", run.path / "validation.json")
    return report


