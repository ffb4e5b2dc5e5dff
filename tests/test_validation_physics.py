"""Z peak fit, physicality checks and the memorisation check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmsgen.engine.features import get_feature_set, load_features
from cmsgen.engine.validation.memorisation import check_memorisation
from cmsgen.engine.validation.physics import (
    Z_FIT_MAX_CHI2_NDF,
    compare_z_peaks,
    fit_z_peak,
    physicality_checks,
    toy_dimuon_events,
)


def draw_voigt_on_exponential(n_signal: int, n_background: int, mass: float, sigma: float, gamma: float, seed: int) -> np.ndarray:
    """Draw a Voigt peak (Gaussian plus Cauchy) and an exponential background, kept in 60-120 GeV."""
    rng = np.random.default_rng(seed)
    signal = mass + rng.normal(0.0, sigma, 3 * n_signal) + gamma * rng.standard_cauchy(3 * n_signal)
    signal = signal[(signal > 60.0) & (signal < 120.0)][:n_signal]
    background = 60.0 + rng.exponential(1.0 / 0.04, 5 * n_background)
    background = background[background < 120.0][:n_background]
    return np.concatenate([signal, background])


def test_z_fit_recovers_mass_and_width() -> None:
    values = draw_voigt_on_exponential(60_000, 6_000, mass=91.0, sigma=1.5, gamma=1.25, seed=0)
    fit = fit_z_peak(values)
    assert fit.status == "ok"
    assert fit.mass == pytest.approx(91.0, abs=4 * fit.mass_err)
    assert fit.gamma == pytest.approx(1.25, abs=4 * fit.gamma_err)
    assert fit.sigma == pytest.approx(1.5, abs=4 * fit.sigma_err)
    assert fit.mass_err < 0.05


def test_z_fit_too_few_events() -> None:
    fit = fit_z_peak(np.array([91.0, 90.0, 92.0]))
    assert fit.status == "too_few_events"
    assert fit.mass is None


def test_physicality_clean_events() -> None:
    fs = get_feature_set("dimuon")
    x = toy_dimuon_events(2_000, seed=0)
    checks = {check.name: check for check in physicality_checks(x, fs, fs.observables(x))}
    assert set(checks) == {"finite", "pt_positive", "phi_range", "allowed_values", "pt_ordering", "pair_mass_squared"}
    for name, check in checks.items():
        assert check.n_failed == 0, name


def test_physicality_counts_broken_events() -> None:
    fs = get_feature_set("dimuon")
    x = toy_dimuon_events(100, seed=1)
    x[0, 2] = 4.0  # mu1_phi beyond pi
    x[1, 3] = -5.0  # negative mu2_pt
    x[2, 6] = 0.3  # charge product not in {-1, +1}
    x[3, 0], x[3, 3] = 10.0, 50.0  # leading muon softer than the second
    x[4, 1] = np.nan
    checks = {check.name: check for check in physicality_checks(x, fs)}
    assert checks["phi_range"].n_failed == 1
    assert checks["pt_positive"].n_failed == 1
    assert checks["allowed_values"].n_failed == 1
    assert checks["pt_ordering"].n_failed == 1
    assert checks["finite"].n_failed == 1


def test_mass_check_allows_rounded_momenta(cms_data: Path) -> None:
    fs = get_feature_set("leading-objects", collection="muons", n=4, fields=("pt", "eta", "phi", "mass", "charge"))
    table = load_features(cms_data / "4mu_2012.csv", fs)
    checks = {check.name: check for check in physicality_checks(table.values, fs)}

    assert checks["mass_nonnegative"].n_failed / len(table.values) < 0.01


def test_mass_check_rejects_clearly_negative_mass() -> None:
    fs = get_feature_set("leading-objects", collection="jets", n=2, fields=("pt", "eta", "phi", "mass"))
    # p = 50 GeV allows mass^2 down to -0.25 GeV^2: -0.3 GeV passes, -0.6 GeV fails.
    x = np.array([[50.0, 0.0, 0.1, -0.3, 30.0, 0.0, 1.0, 5.0], [50.0, 0.0, 0.1, -0.6, 30.0, 0.0, 1.0, 5.0]])
    checks = {check.name: check for check in physicality_checks(x, fs)}

    assert checks["mass_nonnegative"].n_failed == 1


def test_physicality_energy_needs_mass_column() -> None:
    fs = get_feature_set("leading-objects", collection="jets", n=2, fields=("pt", "eta", "phi", "mass"))
    x = np.array([[50.0, 0.5, 0.1, 10.0, 30.0, -0.5, 1.0, 5.0], [50.0, 0.5, 0.1, -40.0, 30.0, -0.5, 1.0, 5.0]])
    checks = {check.name: check for check in physicality_checks(x, fs)}
    assert checks["mass_nonnegative"].n_failed == 1
    # vector reads mass -40 as mass^2 = -1600, so E = sqrt(p^2 - 1600) = 39.8 GeV < pt = 50 GeV.
    assert checks["energy_above_pt"].n_failed == 1
    assert "energy_above_pt" not in {c.name for c in physicality_checks(toy_dimuon_events(10), get_feature_set("dimuon"))}


def test_memorisation_flags_copies() -> None:
    train = toy_dimuon_events(5_000, seed=0)
    held_out = toy_dimuon_events(2_000, seed=1)
    copied = train[np.random.default_rng(2).choice(len(train), 2_000, replace=False)]
    result = check_memorisation(train, copied, held_out)
    assert result.possible_memorisation
    assert result.copy_fraction == pytest.approx(1.0)


def test_memorisation_flags_near_copies() -> None:
    train = toy_dimuon_events(5_000, seed=0)
    held_out = toy_dimuon_events(2_000, seed=1)
    near = train[:2_000] * (1.0 + 1e-3 * np.random.default_rng(3).normal(size=(2_000, 7)))
    near[:, 6] = train[:2_000, 6]
    result = check_memorisation(train, near, held_out)
    assert result.copy_fraction < 0.01
    assert result.median_ratio < 0.1
    assert result.possible_memorisation


def test_memorisation_not_flagged_independent() -> None:
    train = toy_dimuon_events(5_000, seed=0)
    result = check_memorisation(train, toy_dimuon_events(2_000, seed=4), toy_dimuon_events(2_000, seed=5))
    assert not result.possible_memorisation
    assert result.median_ratio == pytest.approx(1.0, abs=0.15)


def test_memorisation_slightly_closer_not_flagged() -> None:
    train = toy_dimuon_events(5_000, seed=0)
    held_out = toy_dimuon_events(2_000, seed=1)
    # Generated events a little closer to the training events: significant, but not by the flagged margin.
    mixed = toy_dimuon_events(2_000, seed=2)
    mixed[:300] = train[:300] * (1.0 + 0.05 * np.random.default_rng(8).normal(size=(300, 7)))
    mixed[:300, 6] = train[:300, 6]
    result = check_memorisation(train, mixed, held_out)

    assert not result.possible_memorisation
    assert result.p_value < 0.01
    assert result.reason.startswith("below the memorisation threshold: generated events are closer")


def test_memorisation_counts_held_out_duplicates() -> None:
    train = toy_dimuon_events(3_000, seed=0)
    held_out = np.concatenate([train[:500], toy_dimuon_events(1_500, seed=6)])
    result = check_memorisation(train, toy_dimuon_events(2_000, seed=7), held_out)
    assert result.held_out_duplicate_fraction == pytest.approx(0.25)
    assert not result.possible_memorisation


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("two_spikes", "no significant peak"),
        ("flat", "no significant peak"),
        ("falling", "edge of the fit window"),
    ],
)
def test_z_fit_unreliable_on_peakless_spectrum(case: str, expected: str) -> None:
    rng = np.random.default_rng(5)
    spectra = {
        # Two narrow lines far from the Z: the minimiser converges with both widths at a bound.
        "two_spikes": np.concatenate([rng.normal(70.0, 0.05, 1_000), rng.normal(105.0, 0.05, 1_000)]),
        "flat": rng.uniform(60.0, 120.0, 2_000),
        "falling": 60.0 + rng.exponential(10.0, 3_000),
    }
    fit = fit_z_peak(spectra[case])
    assert fit.status == "unreliable"
    assert expected in fit.message
    assert fit.problems
    assert fit.to_dict()["status"] == "unreliable"


def test_z_fit_unreliable_gives_no_pulls() -> None:
    good = fit_z_peak(draw_voigt_on_exponential(20_000, 2_000, mass=91.0, sigma=1.5, gamma=1.25, seed=1))
    rng = np.random.default_rng(6)
    bad = fit_z_peak(np.concatenate([rng.normal(70.0, 0.05, 1_000), rng.normal(105.0, 0.05, 1_000)]))
    assert good.status == "ok"
    assert bad.status == "unreliable"
    assert compare_z_peaks(good, bad) == {"mass": None, "gamma": None, "sigma": None}


def test_z_fit_chi2_rule_large_sample() -> None:
    # A Voigt on an exponential does not describe a Gaussian-smeared Breit-Wigner plus a radiative
    # tail exactly. Tripling the sample triples the chi2 excess, but the excess per event stays small.
    values = draw_voigt_on_exponential(60_000, 6_000, mass=91.0, sigma=1.5, gamma=1.25, seed=2)
    tail = 91.0 - np.random.default_rng(7).exponential(8.0, 6_000)
    fit = fit_z_peak(np.concatenate([values, tail[tail > 60.0]]))
    assert fit.status == "ok", fit.message
    assert fit.chi2 / fit.ndf > 1.5


def test_z_fit_of_2011_data_is_ok(shared_data: Path) -> None:
    fs = get_feature_set("dimuon")
    events = load_features([str(shared_data / "cms" / "Zmumu_Run2011A.csv")], fs).values
    fit = fit_z_peak(fs.observables(events)["mass"])
    assert fit.status == "ok", fit.message
    assert fit.problems == []
    # The known mismatch of the model on this sample: chi2/ndf about 3.3.
    assert 2.0 < fit.chi2 / fit.ndf < Z_FIT_MAX_CHI2_NDF
    assert fit.mass == pytest.approx(90.76, abs=0.1)


def test_z_fit_width_at_bound() -> None:
    # A pure Gaussian peak: gamma goes to its lower bound, and only gamma loses its pull.
    values = 91.0 + np.random.default_rng(8).normal(0.0, 1.0, 60_000)
    fit = fit_z_peak(values)
    assert fit.status == "ok", fit.message
    assert fit.at_bound == ["gamma"]
    assert fit.sigma == pytest.approx(1.0, abs=0.02)
    pulls = compare_z_peaks(fit, fit)
    assert pulls["gamma"] is None
    assert pulls["mass"] == pytest.approx(0.0)


def test_memorisation_all_held_out_duplicates_gives_null_median() -> None:
    train = toy_dimuon_events(3_000, seed=0)
    result = check_memorisation(train, toy_dimuon_events(1_000, seed=9), train[:500])
    assert result.held_out_duplicate_fraction == pytest.approx(1.0)
    assert result.to_dict()["median_held_out"] is None
    assert result.to_dict()["median_ratio"] is None
    assert not result.possible_memorisation


def test_report_fails_unreliable_generated_fit() -> None:
    from cmsgen.engine.validation.report import ValidationSettings, _z_peak_section
    from cmsgen.engine.validation.summary import _z_peak_rows

    real = draw_voigt_on_exponential(20_000, 2_000, mass=91.0, sigma=1.5, gamma=1.25, seed=3)
    rng = np.random.default_rng(9)
    generated = np.concatenate([rng.normal(70.0, 0.05, 1_000), rng.normal(105.0, 0.05, 1_000)])
    section = _z_peak_section({"mass": real}, {"mass": generated}, get_feature_set("dimuon"), ValidationSettings())
    assert section["verdict"] == "fail"
    assert section["generated"]["status"] == "unreliable"
    assert section["reason"].startswith("generated fit unreliable: ")
    assert section["pulls"] == {"mass": None, "gamma": None, "sigma": None}
    rows = _z_peak_rows(section)
    assert len(rows) == 1
    assert rows[0]["value"] == "generated unreliable"
    assert rows[0]["note"].startswith("Z peak: generated fit unreliable: ")
    assert rows[0]["baseline"].startswith("real 91")


def test_report_shows_reason_of_skipped_real_fit() -> None:
    from cmsgen.engine.validation.report import ValidationSettings, _z_peak_section
    from cmsgen.engine.validation.summary import _z_peak_rows

    real = draw_voigt_on_exponential(49, 0, mass=91.0, sigma=1.5, gamma=1.25, seed=4)
    generated = draw_voigt_on_exponential(2_000, 200, mass=91.0, sigma=1.5, gamma=1.25, seed=5)
    section = _z_peak_section({"mass": real}, {"mass": generated}, get_feature_set("dimuon"), ValidationSettings())
    assert section["verdict"] == "skipped"
    row = _z_peak_rows(section)[0]
    assert row["value"] == "real too few events"
    assert "real fit too few events: 49 events in 60-120 GeV, fewer than the 100 a fit needs" in row["note"]
