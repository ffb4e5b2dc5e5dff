"""Physics checks: the Z peak fit and the physicality of generated events.

The Z peak is fitted in an invariant-mass spectrum (GeV) with a Voigt profile
on a falling exponential background. The physicality checks count the events
whose features break a law that every real event obeys (pt > 0, |phi| <= pi,
E >= pt, allowed charges, pt ordering of the leading objects). Only the
checks that the feature set's columns allow are run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.optimize
import scipy.special
import vector

from cmsgen.engine.features.sets import ObjectColumns, group_object_columns
from cmsgen.engine.sample import decay_to_muons
from cmsgen.engine.validation.histograms import Z_MASS_RANGE
from cmsgen.engine.validation.univariate import finite_or_none

log = logging.getLogger(__name__)

# Starting values of the fit, in GeV: the PDG Z mass and half its total width
# (scipy's voigt_profile takes the Lorentzian half width at half maximum).
Z_MASS_PDG = 91.1876
Z_HALF_WIDTH_PDG = 2.4955 / 2.0

# Fewer events than this in the fit window give a "too_few_events" result, not a fit.
Z_FIT_MIN_EVENTS = 100

# Quality checks of a converged Z fit (see fit_quality_problems).
# A parameter within this fraction of its allowed range from a bound counts as "at the bound".
Z_FIT_BOUND_TOLERANCE = 1e-3
# A fit misses the spectrum's shape when chi2/ndf exceeds Z_FIT_MAX_CHI2_NDF and the chi2
# excess per event, (chi2 - ndf) / n_events, exceeds Z_FIT_MAX_CHI2_EXCESS_PER_EVENT. The
# 2011 Run A sample (10,227 events in the window) fits with chi2/ndf = 3.3 and an excess of
# 0.012 per event: the Voigt on an exponential misses the radiative tail a little, and that
# excess grows in proportion to the sample size, so a chi2/ndf cut alone would reject good
# fits of larger samples. A fit that misses the peak has chi2/ndf of 18 and an excess of 0.46.
Z_FIT_MAX_CHI2_NDF = 5.0
Z_FIT_MAX_CHI2_EXCESS_PER_EVENT = 0.05
# Largest relative difference between the events in the window and the fitted yields
# integrated over the window. The least-squares fit with errors from the observed counts
# sits low: by about 10 % at 100-300 events (ratio 0.79 to 0.93 in 20 subsets of the 2011
# data) and by 4 % at 3,000. A fit that misses the peak accounts for a few % of the events.
Z_FIT_MAX_YIELD_DEVIATION = 0.3
# A signal yield below this many times its error is no peak.
Z_FIT_MIN_SIGNAL_SIGNIFICANCE = 5.0

# Tolerance for the floating-point comparisons of the physicality checks.
PHYSICALITY_TOLERANCE = 1e-6
# A negative mass passes the mass check while mass^2 stays above -MASS_SQUARED_TOLERANCE * p^2.
# Files that store rounded four-momenta derive slightly negative masses: the 2012 four-lepton
# CSV, rounded to 1 MeV, reaches mass^2 = -0.3 GeV^2 at p = 100 GeV, which is 3e-5 p^2.
MASS_SQUARED_TOLERANCE = 1e-4


class FeatureSetLike(Protocol):
    """Interface of the :mod:`cmsgen.engine.features` feature sets that validation uses."""

    name: str
    columns: tuple[str, ...]
    kinds: tuple[str, ...]

    def observables(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass
class ZPeakFit:
    """Result of a Z peak fit, masses and widths in GeV.

    ``status`` is ``"ok"``, ``"unreliable"`` (the fit converged but fails a
    quality check of :func:`fit_quality_problems`, listed in ``problems`` and
    ``message``), ``"failed"`` (the minimiser raised an error or gave
    non-finite parameter errors) or ``"too_few_events"``. The fitted numbers
    are None unless the status is ``"ok"`` or ``"unreliable"``. ``gamma`` is
    the Lorentzian half width at half maximum (the Z total width is
    2 * gamma), and ``sigma`` the Gaussian resolution. ``at_bound`` names a
    width that sits at its lower bound in an otherwise good fit: the peak is
    then a pure Lorentzian or a pure Gaussian, and that width has no
    meaningful error, so it gets no pull.
    """

    status: str
    n_events: int
    message: str = ""
    mass: float | None = None
    mass_err: float | None = None
    gamma: float | None = None
    gamma_err: float | None = None
    sigma: float | None = None
    sigma_err: float | None = None
    n_signal: float | None = None
    n_signal_err: float | None = None
    n_background: float | None = None
    slope: float | None = None
    chi2: float | None = None
    ndf: int | None = None
    n_expected: float | None = None
    problems: list[str] = field(default_factory=list)
    at_bound: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {key: finite_or_none(v) if isinstance(v, float) else v for key, v in asdict(self).items()}


def _exponential_density(m: np.ndarray, slope: float, low: float, high: float) -> np.ndarray:
    """Return the density slope * exp(-slope (m - low)), normalised to 1 on [low, high], in 1/GeV.

    At a slope near 0 the density is flat.
    """
    if abs(slope) < 1e-9:
        return np.full_like(m, 1.0 / (high - low))
    return slope * np.exp(-slope * (m - low)) / -math.expm1(-slope * (high - low))


def voigt_exponential_counts(
    edges: np.ndarray,
    n_signal: float,
    mass: float,
    sigma: float,
    gamma: float,
    n_background: float,
    slope: float,
) -> np.ndarray:
    """Return the expected counts per bin of a Voigt peak plus an exponential background.

    The density is n_signal * voigt(m - mass; sigma, gamma) + n_background *
    exp_density(m). It is integrated over each bin with Simpson's rule, so
    that the peak curvature within a bin does not bias the width. The
    background is normalised on the range of ``edges``.
    """
    low, high = float(edges[0]), float(edges[-1])
    left, right = edges[:-1], edges[1:]
    middle = 0.5 * (left + right)

    def density(m: np.ndarray) -> np.ndarray:
        signal = scipy.special.voigt_profile(m - mass, sigma, gamma)
        return n_signal * signal + n_background * _exponential_density(m, slope, low, high)

    return (right - left) * (density(left) + 4.0 * density(middle) + density(right)) / 6.0


def fit_z_peak(
    mass: np.ndarray,
    mass_range: tuple[float, float] = Z_MASS_RANGE,
    bins: int = 60,
    min_events: int = Z_FIT_MIN_EVENTS,
) -> ZPeakFit:
    """Fit the Z peak in an invariant-mass sample (GeV, shape [n]).

    The counts in ``bins`` equal bins of ``mass_range`` are fitted with
    :func:`voigt_exponential_counts` by ``scipy.optimize.curve_fit``. This is
    a least-squares fit weighted by the Poisson error of each bin,
    sqrt(max(count, 1)), with ``absolute_sigma=True``, so the parameter errors
    are the 1-sigma errors of that chi2. The free parameters are the signal
    and background yields, the peak position, sigma, gamma and the background
    slope. A fit that raises or gives non-finite errors returns status
    ``"failed"`` instead of raising.
    """
    values = np.asarray(mass, dtype=np.float64)
    values = values[np.isfinite(values)]
    low, high = mass_range
    inside = values[(values >= low) & (values <= high)]
    if inside.size < min_events:
        return ZPeakFit(
            status="too_few_events",
            n_events=int(inside.size),
            message=f"{inside.size} events in {low:g}-{high:g} GeV, fewer than the {min_events} a fit needs",
        )

    edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(inside, bins=edges)
    total = float(counts.sum())
    errors = np.sqrt(np.maximum(counts, 1.0))
    peak_window = inside[(inside > 81.0) & (inside < 101.0)]
    start_mass = float(np.median(peak_window)) if peak_window.size else Z_MASS_PDG
    start = (0.9 * total, start_mass, 2.0, Z_HALF_WIDTH_PDG, 0.1 * total, 0.05)
    lower = (0.0, low, 1e-3, 1e-3, 0.0, -0.5)
    upper = (5.0 * total, high, 20.0, 20.0, 5.0 * total, 0.5)

    def model(_: np.ndarray, *parameters: float) -> np.ndarray:
        return voigt_exponential_counts(edges, *parameters)

    try:
        parameters, covariance = scipy.optimize.curve_fit(
            model,
            edges[:-1],
            counts.astype(np.float64),
            p0=start,
            sigma=errors,
            absolute_sigma=True,
            bounds=(lower, upper),
            maxfev=20_000,
        )
    except (RuntimeError, ValueError) as error:
        log.warning("Z peak fit failed on %d events: %s", inside.size, error)
        return ZPeakFit(status="failed", n_events=int(inside.size), message=f"the fit did not converge: {error}")

    parameter_errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    expected = model(edges[:-1], *parameters)
    residuals = (counts - expected) / errors
    if not np.all(np.isfinite(parameter_errors)):
        return ZPeakFit(status="failed", n_events=int(inside.size), message="the fit gave no finite parameter errors")
    fit = ZPeakFit(
        status="ok",
        n_events=int(inside.size),
        mass=float(parameters[1]),
        mass_err=float(parameter_errors[1]),
        sigma=float(parameters[2]),
        sigma_err=float(parameter_errors[2]),
        gamma=float(parameters[3]),
        gamma_err=float(parameter_errors[3]),
        n_signal=float(parameters[0]),
        n_signal_err=float(parameter_errors[0]),
        n_background=float(parameters[4]),
        slope=float(parameters[5]),
        chi2=float(np.sum(residuals**2)),
        ndf=int(bins - len(parameters)),
        n_expected=float(expected.sum()),
    )
    fit.problems, fit.at_bound = fit_quality_problems(fit, lower, upper)
    if fit.problems:
        fit.status = "unreliable"
        fit.message = "; ".join(fit.problems)
        log.info("Z peak fit on %d events is unreliable: %s", inside.size, fit.message)
    elif fit.at_bound:
        fit.message = f"{' and '.join(fit.at_bound)} at the lower bound of the fit, so it gets no pull"
    return fit


def fit_quality_problems(
    fit: ZPeakFit, lower: Sequence[float], upper: Sequence[float]
) -> tuple[list[str], list[str]]:
    """Check a converged fit and return (problems, widths at their lower bound).

    ``lower`` and ``upper`` are the bounds of the fit parameters in the order
    (n_signal, mass, sigma, gamma, n_background, slope). A problem makes the
    fit unreliable:

    - the peak position at an edge of the window, or a signal yield below
      ``Z_FIT_MIN_SIGNAL_SIGNIFICANCE`` times its error;
    - both widths at their lower bound (a spike, not a peak), or a width at
      its upper bound;
    - chi2/ndf above ``Z_FIT_MAX_CHI2_NDF`` with a chi2 excess per event
      above ``Z_FIT_MAX_CHI2_EXCESS_PER_EVENT``;
    - fitted yields, integrated over the window, that differ from the events
      in the window by more than ``Z_FIT_MAX_YIELD_DEVIATION``.

    A single width at its lower bound is no problem, because a pure Lorentzian
    or a pure Gaussian peak is a limit of the Voigt profile. The background
    yield and slope may sit at their bounds: a sample without background has
    no slope to fit.
    """
    fitted = (fit.mass, fit.sigma, fit.gamma, fit.n_signal, fit.chi2, fit.ndf, fit.n_expected)
    if any(value is None for value in fitted):
        raise ValueError("fit_quality_problems needs a converged fit with every fitted number set")
    assert fit.mass is not None
    assert fit.sigma is not None
    assert fit.gamma is not None
    assert fit.n_signal is not None
    assert fit.chi2 is not None
    assert fit.ndf is not None
    assert fit.n_expected is not None

    def near(value: float, index: int, bound: Sequence[float]) -> bool:
        return abs(value - bound[index]) <= Z_FIT_BOUND_TOLERANCE * (upper[index] - lower[index])

    problems: list[str] = []
    if near(fit.mass, 1, lower) or near(fit.mass, 1, upper):
        problems.append(f"the peak position {fit.mass:.4g} GeV is at an edge of the fit window")
    if fit.n_signal_err is not None and fit.n_signal < Z_FIT_MIN_SIGNAL_SIGNIFICANCE * fit.n_signal_err:
        problems.append(
            f"the signal yield {fit.n_signal:.3g} is below {Z_FIT_MIN_SIGNAL_SIGNIFICANCE:g} times its error "
            f"{fit.n_signal_err:.2g}, so the spectrum shows no significant peak"
        )
    widths = {"sigma": (fit.sigma, 2), "gamma": (fit.gamma, 3)}
    at_lower = [name for name, (value, index) in widths.items() if near(value, index, lower)]
    at_upper = [name for name, (value, index) in widths.items() if near(value, index, upper)]
    if len(at_lower) == len(widths):
        problems.append(f"both widths are at their lower bound of {lower[2]:g} GeV")
    for name in at_upper:
        problems.append(f"{name} is at its upper bound of {upper[widths[name][1]]:g} GeV")
    if fit.ndf > 0:
        chi2_ndf = fit.chi2 / fit.ndf
        excess = (fit.chi2 - fit.ndf) / max(fit.n_events, 1)
        if chi2_ndf > Z_FIT_MAX_CHI2_NDF and excess > Z_FIT_MAX_CHI2_EXCESS_PER_EVENT:
            problems.append(
                f"chi2/ndf = {fit.chi2:.0f}/{fit.ndf} = {chi2_ndf:.1f} is above {Z_FIT_MAX_CHI2_NDF:g}, "
                f"with an excess of {excess:.2f} per event (limit {Z_FIT_MAX_CHI2_EXCESS_PER_EVENT:g})"
            )
    if abs(fit.n_expected - fit.n_events) > Z_FIT_MAX_YIELD_DEVIATION * fit.n_events:
        problems.append(
            f"the fitted yields account for {fit.n_expected / max(fit.n_events, 1):.0%} of the "
            f"{fit.n_events} events in the window"
        )
    at_bound = [] if len(at_lower) == len(widths) else at_lower
    return problems, at_bound


def compare_z_peaks(real: ZPeakFit, generated: ZPeakFit) -> dict[str, float | None]:
    """Return the pulls (generated - real) / combined error of the peak position, gamma and sigma.

    A pull is None when either fit is not ``"ok"``, and for a width that sits
    at its lower bound in either fit.
    """
    pulls: dict[str, float | None] = {}
    for name in ("mass", "gamma", "sigma"):
        value_real, value_generated = getattr(real, name), getattr(generated, name)
        error_real, error_generated = getattr(real, f"{name}_err"), getattr(generated, f"{name}_err")
        if real.status != "ok" or generated.status != "ok" or None in (value_real, value_generated):
            pulls[name] = None
            continue
        if name in real.at_bound or name in generated.at_bound:
            pulls[name] = None
            continue
        combined = math.hypot(error_real or 0.0, error_generated or 0.0)
        pulls[name] = (value_generated - value_real) / combined if combined > 0 else None
    return pulls


@dataclass
class PhysicalityCheck:
    """Count of events that break one physical law. ``columns`` are the columns that the check reads."""

    name: str
    description: str
    columns: list[str]
    n_events: int
    n_failed: int

    @property
    def fraction_failed(self) -> float:
        return self.n_failed / self.n_events if self.n_events else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fraction_failed"] = self.fraction_failed
        return data


def _discrete_values(feature_set: FeatureSetLike, column: str) -> tuple[float, ...] | None:
    allowed: Mapping[str, Sequence[float]] = getattr(feature_set, "discrete_values", None) or {}
    if column in allowed:
        return tuple(float(v) for v in allowed[column])
    if "charge" in column:
        return (-1.0, 1.0)
    return None


def physicality_checks(
    x: np.ndarray,
    feature_set: FeatureSetLike,
    observables: Mapping[str, np.ndarray] | None = None,
) -> list[PhysicalityCheck]:
    """Count the events of ``x`` (shape [n, d], physical units) that break each applicable law.

    Each check runs only when the columns allow it:

    - ``finite``: every column is finite.
    - ``pt_positive``: pt > 0.
    - ``phi_range``: |phi| <= pi.
    - ``allowed_values``: each discrete column takes one of its allowed
      values, {-1, +1} for a charge.
    - ``mass_nonnegative``: object mass columns are >= 0, so mass^2 >= 0, within
      ``MASS_SQUARED_TOLERANCE`` times the object's p^2 (the rounding of stored four-momenta).
    - ``pair_mass_squared``: the ``mass`` observable is finite and >= 0,
      because a NaN there means a negative mass squared. It runs only when
      ``observables`` is given.
    - ``energy_above_pt``: E >= pt, with the stored energy or with E computed
      from pt, eta and mass through ``vector``.
    - ``pt_ordering``: the leading objects of a collection are ordered by
      decreasing pt.

    An event with a NaN in a checked column fails that check.
    """
    x = np.asarray(x, dtype=np.float64)
    columns = list(feature_set.columns)
    kinds = list(feature_set.kinds)
    n_events = len(x)
    checks: list[PhysicalityCheck] = []

    def add(name: str, description: str, used: list[str], failed: np.ndarray) -> None:
        checks.append(PhysicalityCheck(name, description, used, n_events, int(np.count_nonzero(failed))))

    add("finite", "every feature is finite (no NaN or infinity)", columns, ~np.all(np.isfinite(x), axis=1))

    pt_columns = [i for i, kind in enumerate(kinds) if kind == "pt"]
    if pt_columns:
        failed = ~np.all(x[:, pt_columns] > 0.0, axis=1)
        add("pt_positive", "pt > 0 GeV", [columns[i] for i in pt_columns], failed)

    phi_columns = [i for i, kind in enumerate(kinds) if kind == "phi"]
    if phi_columns:
        failed = ~np.all(np.abs(x[:, phi_columns]) <= math.pi + PHYSICALITY_TOLERANCE, axis=1)
        add("phi_range", "|phi| <= pi", [columns[i] for i in phi_columns], failed)

    discrete = [(i, _discrete_values(feature_set, columns[i])) for i, kind in enumerate(kinds) if kind == "discrete"]
    discrete = [(i, allowed) for i, allowed in discrete if allowed]
    if discrete:
        failed = np.zeros(n_events, dtype=bool)
        for i, allowed in discrete:
            distance = np.min(np.abs(x[:, [i]] - np.asarray(allowed)[None, :]), axis=1)
            failed |= ~(distance <= PHYSICALITY_TOLERANCE)
        add("allowed_values", "discrete features (charges) take an allowed value", [columns[i] for i, _ in discrete], failed)

    objects = group_object_columns(columns)
    _add_object_checks(x, columns, objects, add)

    if observables is not None and "mass" in observables:
        mass = np.asarray(observables["mass"], dtype=np.float64)
        add("pair_mass_squared", "the invariant mass is real (mass^2 >= 0)", ["mass"], ~(np.isfinite(mass) & (mass >= 0.0)))
    return checks


def _add_object_checks(
    x: np.ndarray,
    columns: list[str],
    objects: list[ObjectColumns],
    add: Callable[[str, str, list[str], np.ndarray], None],
) -> None:
    """Add the per-object checks (mass, energy, pt ordering) of :func:`physicality_checks`."""
    n_events = len(x)
    with_mass = [item for item in objects if "mass" in item.indices]
    if with_mass:
        failed = np.zeros(n_events, dtype=bool)
        for item in with_mass:
            mass = x[:, item.indices["mass"]]
            allowed = np.full(n_events, PHYSICALITY_TOLERANCE)
            if "pt" in item.indices:
                eta = x[:, item.indices["eta"]] if "eta" in item.indices else np.zeros(n_events)
                momentum = x[:, item.indices["pt"]] * np.cosh(eta)
                allowed = np.maximum(allowed, np.sqrt(MASS_SQUARED_TOLERANCE) * np.abs(momentum))
            failed |= ~(mass >= -allowed)
        add(
            "mass_nonnegative",
            "object mass >= 0 (mass^2 >= 0, within the rounding of stored four-momenta)",
            [columns[i.indices["mass"]] for i in with_mass],
            failed,
        )

    energy_objects = [
        item for item in objects if "pt" in item.indices and ("energy" in item.indices or {"eta", "mass"} <= item.indices.keys())
    ]
    if energy_objects:
        failed = np.zeros(n_events, dtype=bool)
        used: list[str] = []
        for item in energy_objects:
            pt = x[:, item.indices["pt"]]
            if "energy" in item.indices:
                energy = x[:, item.indices["energy"]]
                used += [columns[item.indices["pt"]], columns[item.indices["energy"]]]
            else:
                phi = x[:, item.indices["phi"]] if "phi" in item.indices else np.zeros(n_events)
                four_vectors = vector.array(
                    {"pt": pt, "eta": x[:, item.indices["eta"]], "phi": phi, "mass": x[:, item.indices["mass"]]}
                )
                energy = np.asarray(four_vectors.E, dtype=np.float64)
                used += [columns[item.indices[name]] for name in ("pt", "eta", "mass")]
            failed |= ~(energy >= pt * (1.0 - PHYSICALITY_TOLERANCE))
        add("energy_above_pt", "E >= pt", used, failed)

    by_collection: dict[str, list[ObjectColumns]] = {}
    for item in objects:
        if "pt" in item.indices:
            by_collection.setdefault(item.prefix, []).append(item)
    ordered = [items for items in by_collection.values() if len(items) > 1]
    if ordered:
        failed = np.zeros(n_events, dtype=bool)
        used = []
        for items in ordered:
            for first, second in zip(items[:-1], items[1:]):
                failed |= ~(x[:, first.indices["pt"]] >= x[:, second.indices["pt"]] * (1.0 - PHYSICALITY_TOLERANCE))
            used += [columns[item.indices["pt"]] for item in items]
        add("pt_ordering", "leading objects are ordered by decreasing pt", used, failed)


MUON_MASS = 0.1056583755  # GeV, PDG


def toy_dimuon_events(
    n: int,
    seed: int = 0,
    mass: float = Z_MASS_PDG,
    gamma: float = Z_HALF_WIDTH_PDG,
    resolution: float = 0.02,
    pair_pt_scale: float = 8.0,
    rapidity_width: float = 1.2,
    same_sign_fraction: float = 0.01,
) -> np.ndarray:
    """Draw ``n`` toy Z -> mu mu events as a dimuon feature matrix [n, 7] in physical units.

    Columns: mu1_pt, mu1_eta, mu1_phi, mu2_pt, mu2_eta, mu2_phi,
    charge_product, the muons ordered by decreasing pt. The pair mass follows
    a Breit-Wigner of half width ``gamma`` (GeV) around ``mass``, the pair pt
    an exponential of mean ``pair_pt_scale`` GeV and the pair rapidity a
    Gaussian of width ``rapidity_width``. The decay is isotropic in the pair
    rest frame (``vector`` boosts), and each muon pt is smeared by a relative
    Gaussian ``resolution``. A fraction ``same_sign_fraction`` of events has a
    charge product of +1. The events have no acceptance cuts, so they are for
    tests and benchmarks only.
    """
    rng = np.random.default_rng(seed)
    pair_mass = mass + gamma * rng.standard_cauchy(n)
    pair_mass = np.clip(pair_mass, 2.0 * MUON_MASS + 1.0, None)
    muons = decay_to_muons(rng, pair_mass, pair_pt_mean=pair_pt_scale, rapidity_sigma=rapidity_width)
    pt = np.stack([np.asarray(m.pt) for m in muons], axis=1) * (1.0 + resolution * rng.standard_normal((n, 2)))
    eta = np.stack([np.asarray(m.eta) for m in muons], axis=1)
    phi = np.stack([np.asarray(m.phi) for m in muons], axis=1)
    pt = np.abs(pt)
    order = np.argsort(-pt, axis=1)
    rows = np.arange(n)[:, None]
    pt, eta, phi = pt[rows, order], eta[rows, order], phi[rows, order]
    charge_product = np.where(rng.uniform(size=n) < same_sign_fraction, 1.0, -1.0)
    return np.column_stack([pt[:, 0], eta[:, 0], phi[:, 0], pt[:, 1], eta[:, 1], phi[:, 1], charge_product])
