"""The data layer on the real files: layouts, joins, derivations and CSV header cleaning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from cmsgen.engine.errors import ConfigError, DataNotFoundError, UnreadableFileError
from cmsgen.engine.features import get_feature_set, load_features
from cmsgen.engine.features.sets import flat_fields
from cmsgen.engine.sample import write_sample
from cmsgen.engine.layouts import available_layouts, load_layout_file
from cmsgen.engine.sources import open_dataset

MUON_MASS = 0.1056583755


def read_all(path: Path | str, **kwargs: object) -> ak.Array:
    dataset = open_dataset(path, **kwargs)
    return ak.concatenate(list(dataset.iterate_events(step_size=1000)))


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("uproot-Zmumu.root", "csv-pairs"),
        ("Zmumu_Run2011A.csv", "csv-pairs"),
        ("4mu_2012.csv", "four-lepton"),
        ("uproot-HZZ.root", "hep-tutorial"),
        ("nanoAOD_2015_CMS_Open_Data_ttbar.root", "nanoaod"),
        ("Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root", "nanoaod"),
        ("rootinbinder_aod2nanoaod_10000ev_run195397.root", "nanoaod"),
        ("poet2011_myoutput_50ev_run167675.root", "poet"),
        ("poet2012_myoutput_100ev_run195397.root", "poet"),
    ],
)
def test_layout_detected(cms_data: Path, name: str, layout: str) -> None:
    dataset = open_dataset(cms_data / name)
    assert dataset.layout is not None
    assert dataset.layout.name == layout
    assert layout in dataset.choice.reason


def test_aod2nanoaod_tree_inside_directory(cms_data: Path) -> None:
    dataset = open_dataset(cms_data / "rootinbinder_aod2nanoaod_10000ev_run195397.root")
    assert dataset.files[0].main_tree == "aod2nanoaod/Events"
    assert dataset.n_entries == 10_000


def test_poet_joins_object_trees(cms_data: Path) -> None:
    import uproot

    path = cms_data / "poet2012_myoutput_100ev_run195397.root"
    events = read_all(path)
    with uproot.open(path) as f:
        n_muons = f["mymuons/Events/numbermuon"].array(library="np")
        n_electrons = f["myelectrons/Events/numberelectron"].array(library="np")
        runs = f["myevents/Events/run"].array(library="np")
        met = f["mymets/Events/met_pt"].array(library="np")
    assert len(events) == 100
    # POET 2012 counts every reconstructed muon in numbermuon but stores only those above 3 GeV.
    n_stored = ak.to_numpy(ak.num(events.muons))
    assert (n_stored <= n_muons).all()
    assert (n_stored < n_muons).any()
    assert ak.min(ak.flatten(events.muons.pt)) > 3.0
    np.testing.assert_array_equal(ak.to_numpy(ak.num(events.electrons)), n_electrons)
    np.testing.assert_array_equal(ak.to_numpy(events.run), runs)
    np.testing.assert_allclose(ak.to_numpy(events.met.pt), met)
    assert set(np.unique(ak.to_numpy(ak.flatten(events.muons.charge)))) <= {-1, 1}


def test_poet_2011_counts(cms_data: Path) -> None:
    events = read_all(cms_data / "poet2011_myoutput_50ev_run167675.root")
    assert len(events) == 50
    assert int(ak.sum(ak.num(events.muons))) == 87
    assert int(ak.sum(ak.num(events.electrons))) == 5


def test_aod_reads_particle_flow_jets(legacy_data: Path) -> None:
    import uproot

    path = legacy_data / "opendatatrigger_EDM_AOD_Run2010B_Jet_2ev.root"
    dataset = open_dataset(path)
    assert dataset.layout.name == "cmssw-aod"
    events = ak.concatenate(list(dataset.iterate_events()))
    assert ak.to_list(ak.num(events.jets)) == [14, 5]
    branch = "recoPFJets_ak5PFJets__RECO.obj."
    with uproot.open(path) as f:
        tree = f["Events"]
        stored = {name: tree[branch + name + "_"].array() for name in ("pt", "eta", "phi", "mass", "qx3")}
    for name in ("pt", "eta", "phi", "mass"):
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.jets[name])), ak.to_numpy(ak.flatten(stored[name])), rtol=1e-6)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(events.jets.charge)), np.rint(ak.to_numpy(ak.flatten(stored["qx3"])) / 3))
    assert ak.to_list(ak.num(events.muons)) == [0, 0]
    assert ak.to_list(ak.num(events.electrons)) == [0, 0]


def test_csv_2011_derives_mass(cms_data: Path) -> None:
    dataset = open_dataset(cms_data / "Zmumu_Run2011A.csv")
    statuses = {(s.collection, s.field): s for s in dataset.files[0].field_statuses}
    assert statuses[("muons", "mass")].status == "derived"
    assert "PDG mass of the muon" in statuses[("muons", "mass")].derivation
    events = read_all(cms_data / "Zmumu_Run2011A.csv")
    assert len(events) == 10_583
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.muons.mass)), MUON_MASS)
    table = load_features(cms_data / "Zmumu_Run2011A.csv", "dimuon")
    mass = table.feature_set.observables(table.values)["mass"]
    peak = np.histogram(mass, bins=np.arange(80, 100.5, 0.5))
    assert 89.5 <= peak[1][np.argmax(peak[0])] <= 92.0


def test_hep_tutorial_derives_polar_fields(cms_data: Path) -> None:
    import uproot

    path = cms_data / "uproot-HZZ.root"
    events = read_all(path)
    with uproot.open(path) as f:
        px = f["events/Muon_Px"].array()
        py = f["events/Muon_Py"].array()
        n_muon = f["events/NMuon"].array(library="np")
    np.testing.assert_array_equal(ak.to_numpy(ak.num(events.muons)), n_muon)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.muons.pt)), np.hypot(ak.to_numpy(ak.flatten(px)), ak.to_numpy(ak.flatten(py))), rtol=1e-6)
    histogram = np.bincount(ak.to_numpy(ak.num(events.muons)))
    assert histogram.sum() == 2421
    np.testing.assert_array_equal(histogram, np.bincount(n_muon))


def test_four_lepton_splits_by_pdg_id(cms_data: Path) -> None:
    events = read_all(cms_data / "4mu_2012.csv")
    assert len(events) == 95
    assert int(ak.sum(ak.num(events.muons))) + int(ak.sum(ak.num(events.electrons))) == 4 * 95


def test_csv_header_cleaning(tmp_path: Path, cms_data: Path) -> None:
    lines = (cms_data / "Zmumu_Run2011A.csv").read_text().splitlines()[:51]
    header = "\ufeff" + ", ".join(f" {name} " for name in lines[0].split(",")) + ",,;;;"
    rows = [line + ",,;;;" for line in lines[1:]]
    messy = tmp_path / "messy.csv"
    messy.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    dataset = open_dataset(messy)
    notes = " ".join(dataset.files[0].cleaning)
    assert "byte-order mark" in notes
    assert "';;;' tail" in notes
    assert "stripped spaces" in notes
    assert "empty column" in notes
    clean = read_all(cms_data / "Zmumu_Run2011A.csv")[:50]
    events = read_all(messy)
    assert len(events) == 50
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(events.muons.pt)), ak.to_numpy(ak.flatten(clean.muons.pt)))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(events.muons.charge)), ak.to_numpy(ak.flatten(clean.muons.charge)))


def test_dataset_from_directory_and_glob(cms_data: Path) -> None:
    dataset = open_dataset(str(cms_data / "poet*.root"))
    assert len(dataset.files) == 2
    assert dataset.layout.name == "poet"
    assert dataset.n_entries == 150


def test_user_layout_from_toml(tmp_path: Path, cms_data: Path) -> None:
    layout_file = tmp_path / "mine.toml"
    layout_file.write_text(
        'name = "my-pairs"\ndescription = "first muon only"\npriority = 99\n'
        '[detect]\nrequired = ["pt1", "eta1"]\n'
        '[collections.muons]\nkind = "flat"\nindices = [1]\nspecies = "muon"\n'
        '[collections.muons.fields]\npt = "pt{i}"\neta = "eta{i}"\nphi = "phi{i}"\ncharge = "Q{i}"\n'
    )
    assert load_layout_file(layout_file).name == "my-pairs"
    dataset = open_dataset(cms_data / "uproot-Zmumu.root", layout_files=(layout_file,))
    assert dataset.layout.name == "my-pairs"
    events = ak.concatenate(list(dataset.iterate_events()))
    assert set(ak.num(events.muons).tolist()) == {1}


def test_user_layout_rejects_unknown_key(tmp_path: Path) -> None:
    layout_file = tmp_path / "bad.toml"
    layout_file.write_text('name = "bad"\ncolour = "red"\n[detect]\nrequired = ["x"]\n')
    with pytest.raises(ConfigError, match="colour"):
        load_layout_file(layout_file)


def test_user_layout_rejects_text_indices(tmp_path: Path) -> None:
    layout_file = tmp_path / "bad.toml"
    layout_file.write_text(
        'name = "bad"\n[detect]\nrequired = ["pt1"]\n'
        '[collections.muons]\nkind = "flat"\nindices = ["A", "B"]\n'
        '[collections.muons.fields]\npt = "pt{i}"\n'
    )
    with pytest.raises(ConfigError, match=r"indices = \['A', 'B'\] is invalid"):
        load_layout_file(layout_file)


def test_builtin_layouts_all_load() -> None:
    names = {layout.name for layout in available_layouts()}
    assert {"csv-pairs", "four-lepton", "hep-tutorial", "nanoaod", "poet", "cmssw-aod"} <= names


def test_missing_path_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        open_dataset(tmp_path / "nothing.root")


def test_empty_directory_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="contains no .root"):
        open_dataset(tmp_path)


def test_non_root_file_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.root"
    fake.write_text("this is not ROOT")
    with pytest.raises(UnreadableFileError, match="not a ROOT file"):
        open_dataset(fake)


def test_feature_set_rejects_bad_option() -> None:
    with pytest.raises(ConfigError, match="data.options.n = 0"):
        get_feature_set("leading-objects", n=0)
    with pytest.raises(ConfigError, match="unknown"):
        get_feature_set("trijet")


@pytest.mark.parametrize(
    "name",
    ["uproot-HZZ.root", "rootinbinder_aod2nanoaod_10000ev_run195397.root", "poet2012_myoutput_100ev_run195397.root"],
)
def test_count_selected_matches_select(cms_data: Path, name: str) -> None:
    events = read_all(cms_data / name)
    for feature_set in (get_feature_set("dimuon"), get_feature_set("leading-objects", collection="muons", n=3)):
        assert feature_set.count_selected(events) == len(feature_set.select(events)), feature_set.name


def test_count_selected_flat_and_awkward_agree(tmp_path: Path) -> None:
    """The numpy count and the awkward count agree on the sample's NaNs, sentinels and jets."""
    write_sample(tmp_path, n_events=3000, seed=5)
    feature_sets = (
        get_feature_set("dimuon"),
        get_feature_set("leading-objects", collection="muons", n=2),
        get_feature_set("leading-objects", collection="jets", n=2, fields=["pt", "eta", "phi", "mass"]),
    )
    for layout_dir in ("nanoaod", "tutorial", "csv_pairs"):
        events = read_all(tmp_path / layout_dir)
        for feature_set in feature_sets:
            if feature_set.collection not in events.fields:
                continue
            objects = events[feature_set.collection]
            assert flat_fields(objects, ["pt"]) is not None
            expected = len(feature_set.select(events))
            assert feature_set.count_selected(events) == expected, (layout_dir, feature_set.collection)
            assert feature_set._count_selected_awkward(objects) == expected, (layout_dir, feature_set.collection)


def test_prefetched_keeps_order_and_errors() -> None:
    from cmsgen.engine.sources.dataset import prefetched

    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise UnreadableFileError("Reading entries 2-3 of f.root failed.")

    seen = []
    with pytest.raises(UnreadableFileError, match="entries 2-3"):
        for item in prefetched(items()):
            seen.append(item)
    assert seen == [1, 2]
    assert list(prefetched(iter(range(5)))) == [0, 1, 2, 3, 4]
    assert list(prefetched(iter([]))) == []


def test_read_failure_names_cause_without_dump() -> None:
    from cmsgen.engine.sources.dataset import read_failure

    message = read_failure("f.root", 0, 10, OSError("expected Chunk of length 112,\nreceived 0 bytes"))

    assert message == "Reading entries 0-10 of f.root failed (OSError: expected Chunk of length 112); the file may be truncated: copy it again."
