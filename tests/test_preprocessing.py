"""Preprocessing on real CMS events: the dimuon features of ``uproot-Zmumu.root`` (CMS 2010 Run B)
and ``Zmumu_Run2011A.csv`` (2011 Run A), and the leading jets, electrons and muons of ``uproot-HZZ.root``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cmsgen.engine.errors import ConfigError, NoEventsError
from cmsgen.engine.features import FeatureTable, load_features
from cmsgen.engine.features.preprocessing import Preprocessing, make_dimuon_mass_function, wrap_phi

# float32 keeps about 7 significant digits, and log(pt) and standardisation cost a little more.
FLOAT32_RTOL = 2e-5
FLOAT32_ATOL = 2e-5


@pytest.fixture(scope="module")
def zmumu(cms_data: Path) -> FeatureTable:
    return load_features([cms_data / "uproot-Zmumu.root"], "dimuon")


@pytest.fixture(scope="module")
def pipe(zmumu: FeatureTable) -> Preprocessing:
    return Preprocessing.fit(zmumu.values, zmumu.columns, zmumu.kinds, zmumu.feature_set.discrete_values, seed=3)


@pytest.fixture(scope="module")
def zmumu_any_charge(cms_data: Path) -> FeatureTable:
    """The 2010 dimuon events with same-sign pairs kept, so that the charge product takes two values."""
    return load_features([cms_data / "uproot-Zmumu.root"], "dimuon", options={"opposite_charge": False})


@pytest.fixture(scope="module")
def pipe_any_charge(zmumu_any_charge: FeatureTable) -> Preprocessing:
    table = zmumu_any_charge
    return Preprocessing.fit(table.values, table.columns, table.kinds, table.feature_set.discrete_values, seed=3)


def column(table_or_columns: FeatureTable | tuple[str, ...], name: str) -> int:
    columns = table_or_columns.columns if isinstance(table_or_columns, FeatureTable) else table_or_columns
    return list(columns).index(name)


def test_transform_is_standardised_float32(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    z = pipe.transform(zmumu.values, np.random.default_rng(0))

    assert z.dtype == np.float32
    # The leading phi is replaced by a rotation, and the charge product is -1 in every event.
    assert z.shape == (len(zmumu.values), len(zmumu.columns) - 2)
    assert pipe.output_dim == z.shape[1]
    assert "mu1_phi" not in pipe.output_columns
    assert "charge_product" not in pipe.output_columns
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-4)


def test_two_valued_charge_is_dequantised(zmumu_any_charge: FeatureTable, pipe_any_charge: Preprocessing) -> None:
    pipe = pipe_any_charge
    z = pipe.transform(zmumu_any_charge.values, np.random.default_rng(0))

    assert pipe.discrete_values["charge_product"] == (-1.0, 1.0)
    assert pipe.output_dim == len(zmumu_any_charge.columns) - 1
    # The dequantisation noise differs from the noise drawn while fitting, so these checks are rough.
    charge = z[:, pipe.output_columns.index("charge_product")]
    assert abs(charge.mean()) < 0.3
    assert abs(charge.std() - 1.0) < 0.3
    back = pipe.inverse(z, np.random.default_rng(1))
    j = column(zmumu_any_charge, "charge_product")
    np.testing.assert_array_equal(back[:, j], zmumu_any_charge.values[:, j])


def test_round_trip_exact_up_to_rotation(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    x = zmumu.values
    back = pipe.inverse(pipe.transform(x, np.random.default_rng(1)), np.random.default_rng(2))

    assert back.dtype == np.float64
    assert back.shape == x.shape
    for name in ("mu1_pt", "mu2_pt", "mu1_eta", "mu2_eta"):
        j = column(zmumu, name)
        np.testing.assert_allclose(back[:, j], x[:, j], rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL, err_msg=name)

    # The global rotation is free, so only the relative azimuth must come back.
    relative = wrap_phi(x[:, column(zmumu, "mu2_phi")] - x[:, column(zmumu, "mu1_phi")])
    relative_back = wrap_phi(back[:, column(zmumu, "mu2_phi")] - back[:, column(zmumu, "mu1_phi")])
    difference = wrap_phi(relative_back - relative)
    np.testing.assert_allclose(difference, 0.0, atol=FLOAT32_ATOL)

    j = column(zmumu, "charge_product")
    np.testing.assert_array_equal(back[:, j], x[:, j])


def test_round_trip_keeps_invariant_mass(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    back = pipe.inverse(pipe.transform(zmumu.values, np.random.default_rng(1)), np.random.default_rng(2))
    real = zmumu.feature_set.observables(zmumu.values)
    recovered = zmumu.feature_set.observables(back)

    np.testing.assert_allclose(recovered["mass"], real["mass"], rtol=1e-4)
    np.testing.assert_allclose(recovered["pair_pt"], real["pair_pt"], rtol=1e-4, atol=1e-3)


def test_inverse_of_any_output_is_physical(pipe: Preprocessing) -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(scale=3.0, size=(20_000, pipe.output_dim))
    z[:10] = 40.0
    z[10:20] = -40.0
    x = pipe.inverse(z, rng)
    columns = pipe.columns

    for name in ("mu1_phi", "mu2_phi"):
        assert np.abs(x[:, column(columns, name)]).max() <= np.pi
    for name in ("mu1_pt", "mu2_pt"):
        assert (x[:, column(columns, name)] > 0).all()
    assert set(np.unique(x[:, column(columns, "charge_product")])) == {-1.0}
    assert (x[:, column(columns, "mu1_pt")] >= x[:, column(columns, "mu2_pt")]).all()
    assert np.isfinite(x).all()


def test_leading_phi_rotation_is_uniform(pipe: Preprocessing) -> None:
    import scipy.stats

    z = np.zeros((50_000, pipe.output_dim))
    leading = pipe.inverse(z, np.random.default_rng(5))[:, column(pipe.columns, "mu1_phi")]

    result = scipy.stats.kstest(leading, scipy.stats.uniform(loc=-np.pi, scale=2 * np.pi).cdf)
    assert result.pvalue > 1e-3


def test_back_to_back_pairs_centred(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    # Z -> mu mu pairs are nearly back to back, so raw delta-phi piles up at +-pi. The fitted
    # offset moves that pile to the middle of the wrapped range.
    assert abs(abs(pipe.phi_offsets["mu2_phi"]) - np.pi) < 0.3

    z = pipe.transform(zmumu.values, np.random.default_rng(0))
    relative = z[:, column(pipe.output_columns, "mu2_phi")] * pipe.std[column(pipe.output_columns, "mu2_phi")]
    assert np.mean(np.abs(relative) > 2.5) < 0.05


def test_dict_round_trip_exact(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    restored = Preprocessing.from_dict(json.loads(json.dumps(pipe.to_dict())))

    assert restored.to_dict() == pipe.to_dict()
    assert restored == pipe
    np.testing.assert_array_equal(
        restored.transform(zmumu.values, np.random.default_rng(7)), pipe.transform(zmumu.values, np.random.default_rng(7))
    )
    z = np.random.default_rng(8).normal(size=(100, pipe.output_dim))
    np.testing.assert_array_equal(restored.inverse(z, np.random.default_rng(9)), pipe.inverse(z, np.random.default_rng(9)))


def test_default_rng_is_seeded(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    np.testing.assert_array_equal(pipe.transform(zmumu.values), pipe.transform(zmumu.values))
    z = np.zeros((10, pipe.output_dim))
    np.testing.assert_array_equal(pipe.inverse(z), pipe.inverse(z))


def test_features_without_phi(zmumu: FeatureTable) -> None:
    keep = [column(zmumu, name) for name in ("mu1_pt", "mu1_eta", "mu2_pt")]
    x = zmumu.values[:, keep]
    pipe = Preprocessing.fit(x, ("mu1_pt", "mu1_eta", "mu2_pt"), ("pt", "eta", "pt"), {})

    assert pipe.leading_phi is None
    assert pipe.output_dim == 3
    back = pipe.inverse(pipe.transform(x))
    np.testing.assert_allclose(back, x, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)


def test_three_valued_discrete_column(zmumu: FeatureTable) -> None:
    rng = np.random.default_rng(10)
    charge = rng.choice([-1.0, 0.0, 1.0], size=len(zmumu.values))
    x = np.column_stack([zmumu.values[:, column(zmumu, "mu1_pt")], charge])
    pipe = Preprocessing.fit(x, ("jet1_pt", "jet1_charge"), ("pt", "discrete"), {"jet1_charge": (1, 0, -1)})

    back = pipe.inverse(pipe.transform(x, rng))
    np.testing.assert_array_equal(back[:, 1], charge)


def test_mass_function_matches_vector(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    z = torch.as_tensor(pipe.transform(zmumu.values, np.random.default_rng(0))).requires_grad_(True)
    mass = make_dimuon_mass_function(pipe)(z)
    expected = zmumu.feature_set.observables(zmumu.values)["mass"]

    np.testing.assert_allclose(mass.detach().numpy(), expected, rtol=1e-3)
    mass.sum().backward()
    assert z.grad is not None
    assert torch.isfinite(z.grad).all()


def test_mass_function_needs_pair_columns(zmumu: FeatureTable) -> None:
    x = zmumu.values[:, :3]
    pipe = Preprocessing.fit(x, ("mu1_pt", "mu1_eta", "mu1_phi"), ("pt", "eta", "phi"), {})

    with pytest.raises(ConfigError, match="mu2_pt"):
        make_dimuon_mass_function(pipe)


def test_nonpositive_pt_rejected(zmumu: FeatureTable) -> None:
    x = zmumu.values.copy()
    x[3, column(zmumu, "mu2_pt")] = 0.0

    with pytest.raises(NoEventsError, match="mu2_pt"):
        Preprocessing.fit(x, zmumu.columns, zmumu.kinds, zmumu.feature_set.discrete_values)


def test_nan_rejected(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    x = zmumu.values.copy()
    x[5, column(zmumu, "mu1_eta")] = np.nan

    with pytest.raises(NoEventsError, match="mu1_eta"):
        pipe.transform(x)


def test_discrete_value_outside_set_rejected(zmumu: FeatureTable, pipe: Preprocessing) -> None:
    x = zmumu.values.copy()
    x[0, column(zmumu, "charge_product")] = 0.0

    with pytest.raises(NoEventsError, match="charge_product"):
        pipe.transform(x)


def test_unknown_kind_rejected(zmumu: FeatureTable) -> None:
    with pytest.raises(ConfigError, match="'angle'"):
        Preprocessing.fit(zmumu.values[:, :2], ("mu1_pt", "mu1_eta"), ("pt", "angle"), {})


def test_discrete_without_values_rejected(zmumu: FeatureTable) -> None:
    with pytest.raises(ConfigError, match="charge_product"):
        Preprocessing.fit(zmumu.values, zmumu.columns, zmumu.kinds, {})


def test_from_dict_rejects_other_format(pipe: Preprocessing) -> None:
    data = pipe.to_dict()
    data["format"] = "something-else/9"

    with pytest.raises(ConfigError, match="something-else/9"):
        Preprocessing.from_dict(data)


@pytest.fixture(scope="module")
def zmumu_2011(cms_data: Path) -> FeatureTable:
    return load_features([cms_data / "Zmumu_Run2011A.csv"], "dimuon", options={"opposite_charge": True})


def test_opposite_charge_inverse_keeps_sign(zmumu_2011: FeatureTable) -> None:
    table = zmumu_2011
    pipe = Preprocessing.fit(table.values, table.columns, table.kinds, {"charge_product": (-1.0, 1.0)})
    z = np.random.default_rng(11).normal(scale=2.0, size=(50_000, pipe.output_dim))
    x = pipe.inverse(z, np.random.default_rng(12))

    assert pipe.discrete_values["charge_product"] == (-1.0,)
    assert pipe.constants == {"charge_product": -1.0}
    assert np.all(x[:, column(table, "charge_product")] == -1.0)


def test_inverse_orders_muons_by_pt(zmumu_2011: FeatureTable) -> None:
    table = zmumu_2011
    pipe = Preprocessing.fit(table.values, table.columns, table.kinds, table.feature_set.discrete_values)
    z = np.random.default_rng(13).normal(scale=2.0, size=(50_000, pipe.output_dim))
    x = pipe.inverse(z, np.random.default_rng(14))

    assert pipe.pt_ordered == ("mu",)
    assert np.all(x[:, column(table, "mu1_pt")] >= x[:, column(table, "mu2_pt")])


def test_pt_ordering_moves_whole_objects(zmumu_2011: FeatureTable) -> None:
    table = zmumu_2011
    pipe = Preprocessing.fit(table.values, table.columns, table.kinds, table.feature_set.discrete_values)
    z = np.random.default_rng(15).normal(scale=2.0, size=(20_000, pipe.output_dim))
    x = pipe.inverse(z, np.random.default_rng(16))
    unordered = Preprocessing.from_dict({**pipe.to_dict(), "pt_ordered": []})
    raw = unordered.inverse(z, np.random.default_rng(16))

    swapped = raw[:, column(table, "mu1_pt")] < raw[:, column(table, "mu2_pt")]
    assert swapped.mean() > 0.01
    for field in ("pt", "eta", "phi"):
        np.testing.assert_array_equal(x[swapped, column(table, f"mu1_{field}")], raw[swapped, column(table, f"mu2_{field}")])
        np.testing.assert_array_equal(x[~swapped, column(table, f"mu1_{field}")], raw[~swapped, column(table, f"mu1_{field}")])
    # Observables of the pair do not depend on the order of its muons.
    np.testing.assert_allclose(
        table.feature_set.observables(x)["mass"], table.feature_set.observables(raw)["mass"], rtol=1e-9
    )


def test_unordered_training_data_not_sorted(zmumu_2011: FeatureTable) -> None:
    table = zmumu_2011
    names = ("mu1_pt", "mu1_eta", "mu2_pt", "mu2_eta")
    x = table.values[:, [column(table, name) for name in names]]
    x = x[:, [2, 3, 0, 1]]  # The softer muon first.
    pipe = Preprocessing.fit(x, names, ("pt", "eta", "pt", "eta"), {})

    assert pipe.pt_ordered == ()


@pytest.fixture(scope="module")
def hzz_jets(cms_data: Path) -> FeatureTable:
    options = {"collection": "jets", "n": 2, "fields": ["pt", "eta", "phi", "mass"]}
    return load_features([cms_data / "uproot-HZZ.root"], "leading-objects", options=options)


def test_jet_mass_log_transform(hzz_jets: FeatureTable) -> None:
    table = hzz_jets
    pipe = Preprocessing.fit(table.values, table.columns, table.kinds, table.feature_set.discrete_values)
    z = np.random.default_rng(17).normal(scale=3.0, size=(50_000, pipe.output_dim))
    x = pipe.inverse(z, np.random.default_rng(18))

    assert pipe.kinds[column(table, "jet1_mass")] == "mass"
    # Every training jet mass is positive, so the transform is a plain logarithm.
    assert pipe.mass_offsets == {"jet1_mass": 0.0, "jet2_mass": 0.0}
    for name in ("jet1_mass", "jet2_mass"):
        assert x[:, column(table, name)].min() >= 0.0
    assert np.all(x[:, column(table, "jet1_pt")] >= x[:, column(table, "jet2_pt")])
    back = pipe.inverse(pipe.transform(table.values))
    for name in ("jet1_mass", "jet2_mass"):
        np.testing.assert_allclose(back[:, column(table, name)], table.values[:, column(table, name)], rtol=FLOAT32_RTOL)


def test_negative_training_masses_clipped(cms_data: Path) -> None:
    # Electron masses computed from (E, p) in uproot-HZZ.root go slightly below 0 GeV.
    options = {"collection": "electrons", "n": 2, "fields": ["pt", "eta", "phi", "mass", "charge"]}
    table = load_features([cms_data / "uproot-HZZ.root"], "leading-objects", options=options)
    pipe = Preprocessing.fit(table.values, table.columns, table.kinds, table.feature_set.discrete_values)
    z = np.random.default_rng(19).normal(scale=3.0, size=(50_000, pipe.output_dim))
    x = pipe.inverse(z, np.random.default_rng(20))

    assert table.values[:, column(table, "el1_mass")].min() < 0.0
    assert pipe.mass_offsets["el1_mass"] > 0.0
    for name in ("el1_mass", "el2_mass"):
        assert x[:, column(table, name)].min() >= 0.0
    assert np.isfinite(x).all()
    back = pipe.inverse(pipe.transform(table.values))
    j = column(table, "el1_mass")
    np.testing.assert_allclose(np.maximum(table.values[:, j], 0.0), back[:, j], atol=1e-5)


def test_constant_mass_left_out(zmumu_2011: FeatureTable) -> None:
    table = zmumu_2011
    columns = (*table.columns[:6], "mu1_mass", "mu2_mass")
    kinds = (*table.kinds[:6], "mass", "mass")
    muon_mass = np.full((len(table.values), 2), 0.1056583755)
    x = np.column_stack([table.values[:, :6], muon_mass])
    pipe = Preprocessing.fit(x, columns, kinds, {})
    back = pipe.inverse(np.random.default_rng(21).normal(size=(1_000, pipe.output_dim)))

    assert pipe.output_dim == 5
    assert pipe.constants == {"mu1_mass": 0.1056583755, "mu2_mass": 0.1056583755}
    assert np.all(pipe.std)
    assert np.all(back[:, 6:] == 0.1056583755)
    mass = make_dimuon_mass_function(pipe)(torch.as_tensor(pipe.transform(x)))
    np.testing.assert_allclose(mass.numpy(), table.feature_set.observables(table.values)["mass"], rtol=1e-3)


def test_all_constant_columns_rejected() -> None:
    x = np.column_stack([np.full(10, 40.0), np.full(10, -1.0)])

    with pytest.raises(NoEventsError, match="constant"):
        Preprocessing.fit(x, ("mu1_pt", "charge_product"), ("pt", "discrete"), {"charge_product": (-1, 1)})


def test_format_1_still_loads(pipe_any_charge: Preprocessing) -> None:
    # A run saved before constants, mass offsets and pt ordering existed.
    data = pipe_any_charge.to_dict()
    data["format"] = "cmsgen-preprocessing/1"
    for key in ("constants", "mass_offsets", "pt_ordered"):
        del data[key]

    restored = Preprocessing.from_dict(data)

    assert restored.output_dim == pipe_any_charge.output_dim
    assert restored.pt_ordered == ("mu",)
    x = restored.inverse(np.random.default_rng(22).normal(scale=2.0, size=(5_000, restored.output_dim)))
    assert np.all(x[:, column(restored.columns, "mu1_pt")] >= x[:, column(restored.columns, "mu2_pt")])


def test_from_dict_rejects_missing_key(pipe: Preprocessing) -> None:
    data = pipe.to_dict()
    del data["std"]

    with pytest.raises(ConfigError, match="'std'"):
        Preprocessing.from_dict(data)
