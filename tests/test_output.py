"""Writing events to ROOT, Parquet and CSV, checked by reading the files back.

The events are real: the dimuon features of ``uproot-Zmumu.root`` (CMS 2010 Run B) and the
leading jets of the 2015 NanoAOD ttbar file. The module takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.features import FeatureTable, load_features
from cmsgen.engine.output import invariant_mass, parse_objects, write_events


@pytest.fixture(scope="module")
def dimuon(cms_data: Path) -> FeatureTable:
    return load_features([cms_data / "uproot-Zmumu.root"], "dimuon")


@pytest.fixture(scope="module")
def jets(cms_data: Path) -> FeatureTable:
    return load_features(
        [cms_data / "nanoAOD_2015_CMS_Open_Data_ttbar.root"], "leading-objects", options={"collection": "jets"}
    )


def column(table: FeatureTable, name: str) -> np.ndarray:
    return table.values[:, list(table.columns).index(name)]


def test_root_nanoaod_names_and_values(tmp_path: Path, dimuon: FeatureTable) -> None:
    path = write_events(tmp_path / "events.root", dimuon.values, dimuon.columns, seed=1)

    tree = uproot.open(path)["Events"]
    assert isinstance(tree, uproot.TTree)
    assert tree.keys() == ["nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"]
    events = tree.arrays()
    assert len(events) == len(dimuon.values)
    assert ak.all(events.nMuon == 2)
    for field in ("pt", "eta", "phi"):
        written = ak.to_numpy(events[f"Muon_{field}"])
        assert np.allclose(written[:, 0], column(dimuon, f"mu1_{field}"), rtol=1e-6)
        assert np.allclose(written[:, 1], column(dimuon, f"mu2_{field}"), rtol=1e-6)
    charges = ak.to_numpy(events.Muon_charge)
    assert set(np.unique(charges)) == {-1, 1}
    assert np.array_equal(charges[:, 0] * charges[:, 1], column(dimuon, "charge_product"))


def test_root_reads_back_as_dimuon(tmp_path: Path, dimuon: FeatureTable) -> None:
    path = write_events(tmp_path / "events.root", dimuon.values, dimuon.columns)

    again = load_features([path], "dimuon")

    assert again.layout == "nanoaod"
    assert np.allclose(again.values, dimuon.values, rtol=1e-6, atol=1e-6)


def test_parquet_same_names(tmp_path: Path, dimuon: FeatureTable) -> None:
    path = write_events(tmp_path / "events.parquet", dimuon.values, dimuon.columns)

    events = ak.from_parquet(path)

    assert events.fields == ["nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"]
    assert np.allclose(ak.to_numpy(events.Muon_pt[:, 1]), column(dimuon, "mu2_pt"), rtol=1e-6)


def test_csv_education_names_and_mass(tmp_path: Path, dimuon: FeatureTable) -> None:
    path = write_events(tmp_path / "events.csv", dimuon.values, dimuon.columns)

    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    table = np.genfromtxt(path, delimiter=",", skip_header=1)

    assert header == [f"{name}{i}" for i in (1, 2) for name in ("E", "px", "py", "pz", "pt", "eta", "phi", "Q")] + ["M"]
    assert np.allclose(table[:, header.index("pt1")], column(dimuon, "mu1_pt"))
    assert np.allclose(table[:, header.index("M")], dimuon.feature_set.observables(dimuon.values)["mass"])
    again = load_features([path], "dimuon")
    assert again.layout == "csv-pairs"
    assert np.allclose(again.values, dimuon.values)


def test_jets_use_jet_names(tmp_path: Path, jets: FeatureTable) -> None:
    path = write_events(tmp_path / "jets.root", jets.values, jets.columns)

    tree = uproot.open(path)["Events"]

    assert tree.keys() == ["nJet", "Jet_pt", "Jet_eta", "Jet_phi"]
    assert np.allclose(ak.to_numpy(tree["Jet_pt"].array())[:, 0], column(jets, "jet1_pt"), rtol=1e-6)


def test_jet_csv_flat_nanoaod_names(tmp_path: Path, cms_data: Path) -> None:
    options = {"collection": "jets", "n": 2, "fields": ["pt", "eta", "phi", "mass"]}
    jets = load_features([cms_data / "uproot-HZZ.root"], "leading-objects", options=options)
    path = write_events(tmp_path / "jets.csv", jets.values, jets.columns)

    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    table = np.genfromtxt(path, delimiter=",", skip_header=1)

    assert header == [f"Jet{i}_{name}" for i in (1, 2) for name in ("pt", "eta", "phi", "mass")] + ["M"]
    assert np.allclose(table[:, header.index("Jet2_mass")], column(jets, "jet2_mass"))
    assert np.allclose(table[:, header.index("M")], jets.feature_set.observables(jets.values)["mass"])


def test_four_muon_csv_reads_back(tmp_path: Path, cms_data: Path) -> None:
    options = {"collection": "muons", "n": 4, "fields": ["pt", "eta", "phi", "charge"]}
    muons = load_features([cms_data / "4mu_2012.csv"], "leading-objects", options=options)
    path = write_events(tmp_path / "muons.csv", muons.values, muons.columns)

    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    table = np.genfromtxt(path, delimiter=",", skip_header=1)
    again = load_features([path], "leading-objects", options=options)

    assert header[:9] == ["PID1", "E1", "px1", "py1", "pz1", "pt1", "eta1", "phi1", "Q1"]
    assert np.array_equal(table[:, header.index("PID1")], -13 * column(muons, "mu1_charge"))
    assert again.layout == "four-lepton"
    assert np.allclose(again.values, muons.values)


def test_types_match_nanoaod(tmp_path: Path, cms_data: Path, dimuon: FeatureTable) -> None:
    nanoaod = uproot.open(cms_data / "nanoAOD_2015_CMS_Open_Data_ttbar.root")["Events"]
    path = write_events(tmp_path / "events.root", dimuon.values, dimuon.columns)
    tree = uproot.open(path)["Events"]

    for name in ("Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"):
        assert tree[name].typename == nanoaod[name].typename, name
    parquet = ak.from_parquet(write_events(tmp_path / "events.parquet", dimuon.values, dimuon.columns))
    assert str(ak.type(parquet.nMuon).content) == "uint32"
    assert nanoaod["nMuon"].typename == "uint32_t"


def test_invariant_mass_matches_feature_set(dimuon: FeatureTable) -> None:
    expected = dimuon.feature_set.observables(dimuon.values)["mass"]

    assert np.allclose(invariant_mass(dimuon.values, dimuon.columns), expected)
    assert [o.collection for o in parse_objects(dimuon.columns)] == ["Muon", "Muon"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("events.txt", "extension '.txt': expected .root, .parquet or .csv"), ("events", "has no extension")],
)
def test_unknown_extension_rejected(tmp_path: Path, dimuon: FeatureTable, name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        write_events(tmp_path / name, dimuon.values, dimuon.columns)


def test_existing_file_kept(tmp_path: Path, dimuon: FeatureTable) -> None:
    target = tmp_path / "events.root"
    target.write_bytes(b"earlier results")

    with pytest.raises(ConfigError, match="already exists"):
        write_events(target, dimuon.values, dimuon.columns)

    assert target.read_bytes() == b"earlier results"
    write_events(target, dimuon.values, dimuon.columns, overwrite=True)
    assert uproot.open(target)["Events"].num_entries == len(dimuon.values)


def test_failed_write_leaves_nothing(tmp_path: Path, dimuon: FeatureTable, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_half_way(array: ak.Array, destination: Path, *args: object, **kwargs: object) -> None:
        Path(destination).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ak, "to_parquet", fail_half_way)

    with pytest.raises(ConfigError, match="No space left on device"):
        write_events(tmp_path / "events.parquet", dimuon.values, dimuon.columns)

    assert list(tmp_path.iterdir()) == []
