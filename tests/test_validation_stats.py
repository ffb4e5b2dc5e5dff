"""Statistical correctness of the validation figures on samples drawn with known results."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.features import get_feature_set, load_features
from cmsgen.engine.validation import compare_histograms, histogram_1d, shared_edges, validate_arrays
from cmsgen.engine.validation import multivariate, univariate
from cmsgen.engine.validation.physics import toy_dimuon_events
from cmsgen.engine.validation.report import ValidationSettings, figure_bins, judge_distance


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=700), rng.normal(0.1, 1.0, size=900)
    expected = scipy.stats.ks_2samp(a, b)
    result = univariate.ks_test(a, b)
    assert result.value == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_w1_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.exponential(size=800), rng.exponential(1.2, size=600)
    result = univariate.wasserstein_1(a, b, n_bootstrap=10, seed=0)
    assert result.value == pytest.approx(scipy.stats.wasserstein_distance(a, b))
    assert result.error is not None
    assert result.error > 0


def test_w1_of_shift_is_the_shift() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=50_000)
    result = univariate.wasserstein_1(a, a + 0.5, n_bootstrap=5, seed=0)
    assert result.value == pytest.approx(0.5, abs=1e-9)


def test_ks_rarely_rejects_null() -> None:
    small = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        p_value = univariate.ks_test(rng.normal(size=400), rng.normal(size=500)).p_value
        small += p_value < 0.05
    assert small / 50 < 0.15


def test_chi2_matches_contingency_table() -> None:
    real = np.array([30.0, 50.0, 80.0, 40.0, 10.0])
    generated = np.array([70.0, 90.0, 150.0, 100.0, 25.0])
    expected_chi2, expected_p, expected_ndf, _ = scipy.stats.chi2_contingency(np.stack([real, generated]), correction=False)
    result = univariate.chi2_homogeneity(real, generated)
    assert result.details["chi2"] == pytest.approx(expected_chi2)
    assert result.details["ndf"] == expected_ndf
    assert result.p_value == pytest.approx(expected_p)


def test_jsd_and_separation_bounds() -> None:
    same = np.array([10.0, 20.0, 30.0])
    disjoint_a = np.array([10.0, 0.0, 0.0])
    disjoint_b = np.array([0.0, 0.0, 5.0])
    assert univariate.jensen_shannon(same, 2 * same).value == pytest.approx(0.0, abs=1e-12)
    assert univariate.jensen_shannon(disjoint_a, disjoint_b).value == pytest.approx(1.0)
    assert univariate.separation_power(same, 3 * same).value == pytest.approx(0.0, abs=1e-12)
    assert univariate.separation_power(disjoint_a, disjoint_b).value == pytest.approx(1.0)


def _verdicts(real: np.ndarray, generated: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Judge two 1-D samples like the report does.

    Returns the verdicts of the distance figures (w1, jsd, separation_power)
    and the p-values of the tests (ks_p, chi2_p).
    """
    settings = ValidationSettings()
    half = len(real) // 2
    edges = shared_edges(real, "real", 50)
    counts = univariate.binned_counts(real, generated, edges)
    counts_base = univariate.binned_counts(real[:half], real[half:], edges)
    verdicts = {
        "ks_p": univariate.ks_test(real, generated).p_value,
        "chi2_p": univariate.chi2_homogeneity(*counts).p_value,
    }
    for name, function in (("jsd", univariate.jensen_shannon), ("separation_power", univariate.separation_power)):
        verdicts[name] = judge_distance(function(*counts, 20, seed), function(*counts_base, 20, seed), settings)[0]
    w1 = univariate.wasserstein_1(real, generated, 20, seed)
    w1_base = univariate.wasserstein_1(real[:half], real[half:], 20, seed)
    verdicts["w1"] = judge_distance(w1, w1_base, settings)[0]
    return verdicts


def test_same_distribution_sits_at_baseline() -> None:
    rng = np.random.default_rng(10)
    verdicts = _verdicts(rng.normal(size=20_000), rng.normal(size=20_000))
    assert verdicts["w1"] == "pass"
    assert verdicts["jsd"] == "pass"
    assert verdicts["separation_power"] == "pass"
    assert verdicts["ks_p"] > 0.001
    assert verdicts["chi2_p"] > 0.001


def test_shift_detected() -> None:
    rng = np.random.default_rng(11)
    verdicts = _verdicts(rng.normal(size=20_000), rng.normal(0.3, 1.0, size=20_000))
    assert verdicts["ks_p"] < 1e-6
    assert verdicts["w1"] == "fail"
    assert verdicts["chi2_p"] < 1e-3


def test_widening_detected() -> None:
    rng = np.random.default_rng(12)
    verdicts = _verdicts(rng.normal(size=20_000), rng.normal(0.0, 1.25, size=20_000))
    assert verdicts["ks_p"] < 1e-6
    assert verdicts["chi2_p"] < 1e-6
    assert verdicts["separation_power"] == "fail"


def test_truncation_detected() -> None:
    rng = np.random.default_rng(13)
    wide = rng.normal(size=40_000)
    truncated = wide[np.abs(wide) < 1.5][:20_000]
    verdicts = _verdicts(rng.normal(size=20_000), truncated)
    assert verdicts["chi2_p"] < 1e-6
    assert verdicts["jsd"] == "fail"
    assert verdicts["ks_p"] < 1e-3


def test_frechet_matches_closed_form() -> None:
    mean_1, mean_2 = np.array([0.0, 1.0]), np.array([0.5, -1.0])
    scale_1, scale_2 = np.array([1.0, 2.0]), np.array([3.0, 0.5])
    exact = multivariate.frechet_distance_gaussian(mean_1, np.diag(scale_1**2), mean_2, np.diag(scale_2**2))
    closed_form = np.sum((mean_1 - mean_2) ** 2) + np.sum((scale_1 - scale_2) ** 2)
    assert exact == pytest.approx(closed_form)
    rng = np.random.default_rng(4)
    x = mean_1 + scale_1 * rng.normal(size=(200_000, 2))
    y = mean_2 + scale_2 * rng.normal(size=(200_000, 2))
    assert multivariate.frechet_distance(x, y) == pytest.approx(closed_form, rel=0.02)


def test_fpd_extrapolates_to_closed_form() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30_000, 3))
    shifted = rng.normal(size=(30_000, 3)) + np.array([0.3, 0.0, 0.0])
    same = rng.normal(size=(30_000, 3))
    result = multivariate.frechet_physics_distance(x, shifted, 5_000, 20_000, 5, 5, seed=0)
    assert result.value == pytest.approx(0.09, abs=4 * result.error + 0.01)
    null = multivariate.frechet_physics_distance(x, same, 5_000, 20_000, 5, 5, seed=0)
    assert null.value < 0.01


def test_kpd_separates_shift_from_null() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4_000, 4))
    null = multivariate.kernel_physics_distance(x, rng.normal(size=(4_000, 4)), 5, 1_000, seed=0)
    shifted = multivariate.kernel_physics_distance(x, rng.normal(size=(4_000, 4)) + 0.5, 5, 1_000, seed=0)
    assert abs(null.value) < 3 * null.error + 1e-3
    assert shifted.value > 10 * (abs(null.value) + null.error)


def _kpd_null_values(events: np.ndarray, sizes: tuple[int, ...], seeds: range) -> tuple[np.ndarray, np.ndarray]:
    """Return the KPD values and errors of two disjoint random subsets of ``events`` per size and seed."""
    values, errors = [], []
    for size in sizes:
        for seed in seeds:
            order = np.random.default_rng(seed).permutation(len(events))
            first, second = multivariate.standardise(events[order[:size]], events[order[size : 2 * size]])
            result = multivariate.kernel_physics_distance(first, second, seed=seed)
            values.append(result.value)
            errors.append(result.error)
    return np.asarray(values), np.asarray(errors)


def test_kpd_unbiased_on_toy_null() -> None:
    # Opposite-sign toy Z events like the selected real data, without the Breit-Wigner tails
    # that reach 1e10 GeV. The muon pt keeps a long tail.
    events = toy_dimuon_events(8_000, seed=20, gamma=0.0, same_sign_fraction=0.0)
    values, errors = _kpd_null_values(events, (500, 1_000, 4_000), range(8))
    # With replacement and a batch as large as the sample, every one of the 24 values was positive.
    positive = np.mean(values > 0)
    assert 0.25 <= positive <= 0.75
    assert np.all(np.abs(values) <= 3 * errors)


def test_kpd_unbiased_on_real_null(shared_data: Path) -> None:
    fs = get_feature_set("dimuon")
    events = load_features([str(shared_data / "cms" / "Zmumu_Run2011A.csv")], fs).values
    values, errors = _kpd_null_values(events, (500, 1_000, 4_000), range(8))
    positive = np.mean(values > 0)
    assert 0.25 <= positive <= 0.75
    assert np.all(np.abs(values) <= 3 * errors)


def test_kpd_batches_are_distinct_halves() -> None:
    rng = np.random.default_rng(21)
    result = multivariate.kernel_physics_distance(rng.normal(size=(600, 3)), rng.normal(size=(400, 3)), 5, 5_000, seed=0)
    assert result.details["batch_size"] == 200
    assert result.error > 0


def test_classifier_auc_null_and_shift() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6_000, 3))
    null = multivariate.classifier_two_sample_test(x, rng.normal(size=(6_000, 3)), epochs=3, seed=0)
    shifted = multivariate.classifier_two_sample_test(x, rng.normal(size=(6_000, 3)) + 0.5, epochs=3, seed=0)
    assert abs(null.value - 0.5) < 4 * null.error
    assert shifted.value > 0.6


def test_correlation_difference_detects_correlation() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(20_000, 2))
    z = rng.normal(size=20_000)
    correlated = np.column_stack([z, 0.8 * z + 0.6 * rng.normal(size=20_000)])
    result = multivariate.correlation_difference(x, correlated, seed=0)
    # Off-diagonal difference 0.8 appears twice: sqrt(2) * 0.8.
    assert result.value == pytest.approx(np.sqrt(2) * 0.8, abs=0.03)


def test_histogram_1d_counts_flow() -> None:
    histogram = histogram_1d(np.array([-5.0, 0.1, 0.2, 0.9, 5.0, np.nan]), bins=2, range=(0.0, 1.0))
    assert histogram.counts.tolist() == [2.0, 1.0]
    assert histogram.underflow == 1
    assert histogram.overflow == 1
    assert histogram.n_nonfinite == 1


def test_shared_edges_by_kind() -> None:
    values = np.random.default_rng(0).normal(91, 5, 1000)
    assert shared_edges(values, "phi", 10, "mu1_phi")[0] == pytest.approx(-np.pi)
    assert shared_edges(values, "pt", 60, "mass", feature_set_name="dimuon").tolist() == np.linspace(60, 120, 61).tolist()
    assert shared_edges(values, "discrete", 50, "charge_product", (-1.0, 1.0)).tolist() == [-2.0, 0.0, 2.0]


def test_histogram_ratio_of_identical_samples() -> None:
    values = np.random.default_rng(0).normal(size=5000)
    comparison = compare_histograms("x", values, values, np.linspace(-3, 3, 31))
    finite = np.isfinite(comparison.ratio)
    assert np.allclose(comparison.ratio[finite], 1.0)
    assert comparison.to_dict()["edges"][0] == -3.0


@pytest.fixture(scope="module")
def toy_report_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return toy_dimuon_events(3_000, seed=1), toy_dimuon_events(3_000, seed=2), toy_dimuon_events(3_000, seed=3)


FAST_SETTINGS = {"n_bootstrap": 5, "fpd_batches": 4, "fpd_points": 4, "kpd_batches": 4, "kpd_batch_size": 1000, "classifier_epochs": 3}


def test_report_same_seed_same_json(toy_report_inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    real, generated, train = toy_report_inputs
    fs = get_feature_set("dimuon")
    first = validate_arrays(real, generated, fs, train=train, seed=3, thresholds=FAST_SETTINGS).to_dict()
    second = validate_arrays(real, generated, fs, train=train, seed=3, thresholds=FAST_SETTINGS).to_dict()
    first.pop("created")
    second.pop("created")
    assert first == second


def test_report_same_distribution_passes(toy_report_inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    real, generated, train = toy_report_inputs
    report = validate_arrays(real, generated, get_feature_set("dimuon"), train=train, seed=0, thresholds=FAST_SETTINGS)
    summary = report.summary()
    assert summary["fail"] == 0
    assert summary["pass"] >= 0.9 * (summary["pass"] + summary["warn"])
    assert report.memorisation["verdict"] == "pass"
    assert report.physics["z_peak"]["verdict"] == "pass"


def test_report_shifted_mass_fails(toy_report_inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    real, _, train = toy_report_inputs
    shifted = toy_dimuon_events(3_000, seed=4, mass=94.0)
    report = validate_arrays(real, shifted, get_feature_set("dimuon"), train=train, seed=0, thresholds=FAST_SETTINGS)
    mass = next(variable for variable in report.variables if variable.name == "mass")
    assert mass.figures["ks"].verdict == "fail"
    assert mass.figures["separation_power"].verdict == "fail"
    assert report.physics["z_peak"]["verdict"] == "fail"


def test_settings_reject_unknown_key() -> None:
    with pytest.raises(ConfigError, match="pass_facto"):
        ValidationSettings.from_mapping({"pass_facto": 3})


def test_settings_reject_bad_value() -> None:
    with pytest.raises(ConfigError, match="bins"):
        ValidationSettings.from_mapping({"bins": "many"})
    with pytest.raises(ConfigError, match="warn_factor"):
        ValidationSettings.from_mapping({"pass_factor": 4, "warn_factor": 3})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"p_value_pass": 2.0}, "validation.p_value_pass = 2.0 is invalid: a probability or fraction is at most 1"),
        ({"memorisation_p_value": 4.0}, "memorisation_p_value = 4.0"),
        ({"z_pull_pass": 3.0, "z_pull_warn": 2.0}, "validation.z_pull_warn = 2.0 is invalid: it must be >= z_pull_pass"),
        ({"physicality_pass": 0.05}, "validation.physicality_warn = 0.01 is invalid: it must be >= physicality_pass"),
        ({"fpd_min_samples": 10**9}, "fpd_max_samples"),
    ],
)
def test_settings_reject_inconsistent_thresholds(values: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ValidationSettings.from_mapping(values)


def test_report_rejects_wrong_shape() -> None:
    fs = get_feature_set("dimuon")
    with pytest.raises(ConfigError, match="7 columns"):
        validate_arrays(np.zeros((100, 3)), np.zeros((100, 3)), fs)


def test_figure_bins_follow_sample_size() -> None:
    assert figure_bins(50, 25) == 5
    assert figure_bins(50, 511) == 22
    assert figure_bins(50, 100_000) == 50
    assert figure_bins(50, 3) == 5


def test_jsd_baseline_of_small_halves_stays_low() -> None:
    # 25 against 25 events from one distribution, as in the baseline of a 50-event test split.
    # In 50 bins their JSD has a median near 0.6, close to the maximum of 1.
    bins = figure_bins(50, 25)
    values = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        first, second = rng.normal(size=25), rng.normal(size=25)
        counts = univariate.binned_counts(first, second, shared_edges(first, "real", bins))
        values.append(univariate.jensen_shannon(*counts, 5, 0).value)
    assert np.median(values) < 0.2


def test_report_small_sample_warns_and_adapts_bins() -> None:
    fs = get_feature_set("dimuon")
    real, generated = toy_dimuon_events(60, seed=30), toy_dimuon_events(2_000, seed=31)
    report = validate_arrays(real, generated, fs, seed=0, thresholds=FAST_SETTINGS, source="run")
    data = report.to_dict()
    assert data["inputs"]["bins"] == 5
    assert [warning["code"] for warning in data["warnings"]] == ["small_sample"]
    assert "only 60 events" in data["warnings"][0]["message"]
    assert "training.test_fraction" in data["warnings"][0]["message"]
    mu1_pt = next(variable for variable in data["univariate"] if variable["name"] == "mu1_pt")
    assert len(mu1_pt["histogram"]["edges"]) == 6
    assert "**warning**: the real sample has only 60 events" in report.to_markdown()


def test_report_large_sample_has_no_warning(toy_report_inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    real, generated, _ = toy_report_inputs
    report = validate_arrays(real[:2_000], generated[:2_000], get_feature_set("dimuon"), seed=0, thresholds=FAST_SETTINGS)
    assert report.warnings == []
    assert report.inputs["bins"] == 31
