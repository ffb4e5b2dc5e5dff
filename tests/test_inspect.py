"""File inspection on the real CMS and legacy files: trees, entries, branches, readability."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from cmsgen.engine.errors import DataNotFoundError, UnreadableFileError
from cmsgen.engine.sources.inspect import FileStructure, inspect_file, inspect_path, read_branch_values

# (file path relative to the shared data folder, {object path: entries}) for every TTree, RNTuple or table.
EXPECTED_OBJECTS = [
    ("cms/uproot-Zmumu.root", {"events": 2304}),
    ("cms/uproot-HZZ.root", {"events": 2421}),
    ("cms/nanoAOD_2015_CMS_Open_Data_ttbar.root", {"Events": 200}),
    ("cms/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root", {"Events": 1000}),
    ("cms/rootinbinder_aod2nanoaod_10000ev_run195397.root", {"aod2nanoaod/Events": 10000}),
    (
        "cms/poet2011_myoutput_50ev_run167675.root",
        {"myevents/Events": 50, "myelectrons/Events": 50, "mymuons/Events": 50},
    ),
    ("cms/Zmumu_Run2011A.csv", {"Zmumu_Run2011A.csv": 10583}),
    ("cms/4mu_2012.csv", {"4mu_2012.csv": 95}),
    ("legacy/uproot-mc10events.root", {"Events": 10}),
    ("legacy/uproot-issue335.root", {"empty_tree": 0}),
    ("legacy/uproot-issue64.root", {"events/events": 500}),
    (
        "legacy/opendatatrigger_EDM_AOD_Run2010B_Jet_2ev.root",
        {"MetaData": 1, "ParameterSets": 3418, "Parentage": 264, "Events": 2, "LuminosityBlocks": 1, "Runs": 1},
    ),
]

POET_2012_TREES = (
    "myevents", "myelectrons", "mymuons", "myphotons", "myjets", "mymets",
    "mytaus", "mytriggers", "mypvertex", "mytracks", "mygenparticle", "mytrigEvent",
)  # fmt: skip

MC10_UNREADABLE = {
    "Info",
    "Info/triggerBits",
    *(
        f"{collection}/{collection}.hltMatchBits"
        for collection in ("Electron", "Muon", "Tau", "Photon", "AK4CHS", "AK8CHS", "CA15CHS", "AK4Puppi", "CA8Puppi", "CA15Puppi")
    ),
}
AOD_FILE = "legacy/opendatatrigger_EDM_AOD_Run2010B_Jet_2ev.root"
AOD_JET_PT = "recoPFJets_ak5PFJets__RECO./recoPFJets_ak5PFJets__RECO.obj/recoPFJets_ak5PFJets__RECO.obj.pt_"


@pytest.fixture(scope="module")
def structures(shared_data: Path) -> dict[str, FileStructure]:
    """Inspect every real file once for the module."""
    result = {}
    for folder in ("cms", "legacy"):
        for structure in inspect_path(shared_data / folder):
            result[f"{folder}/{Path(structure.path).name}"] = structure
    return result


def test_every_real_file_inspected(structures: dict[str, FileStructure], shared_data: Path) -> None:
    on_disk = {f"{folder}/{path.name}" for folder in ("cms", "legacy") for path in (shared_data / folder).iterdir() if path.suffix in (".root", ".csv")}
    assert set(structures) == on_disk
    for name, structure in structures.items():
        assert structure.error is None, name
        assert structure.size_bytes == (shared_data / name).stat().st_size


@pytest.mark.parametrize(("name", "expected"), EXPECTED_OBJECTS)
def test_objects_and_entries(structures: dict[str, FileStructure], name: str, expected: dict[str, int]) -> None:
    structure = structures[name]
    found = {item.path: item.entries for item in structure.data_objects}
    assert found == expected


def test_poet_2012_object_trees(structures: dict[str, FileStructure]) -> None:
    structure = structures["cms/poet2012_myoutput_100ev_run195397.root"]
    trees = {item.path: item.entries for item in structure.data_objects}
    assert trees == {f"{name}/Events": 100 for name in POET_2012_TREES}
    assert all(item.kind == "tree" for item in structure.data_objects)
    muons = structure.find("mymuons/Events")
    assert {"numbermuon", "muon_pt", "muon_ch"} <= {branch.name for branch in muons.branches}


def test_zmumu_tree_branches(structures: dict[str, FileStructure]) -> None:
    tree = structures["cms/uproot-Zmumu.root"].find("events")
    branches = {branch.name: branch for branch in tree.branches}
    assert set(branches) >= {"Type", "Run", "Event", "E1", "px1", "pt1", "eta1", "phi1", "Q1", "M"}
    assert branches["M"].type == "double"
    assert branches["M"].readable
    assert branches["M"].leaf
    assert branches["M"].compression == "ZLIB(4)"
    assert branches["M"].compressed_bytes > 0
    assert branches["M"].uncompressed_bytes >= 2304 * 8


def test_sizes_match_uproot(structures: dict[str, FileStructure], shared_data: Path) -> None:
    tree = structures["cms/uproot-HZZ.root"].find("events")
    with uproot.open(shared_data / "cms/uproot-HZZ.root") as handle:
        reference = handle["events"]
        for branch in tree.branches:
            assert branch.compressed_bytes == reference[branch.name].compressed_bytes, branch.name
            assert branch.uncompressed_bytes == reference[branch.name].uncompressed_bytes, branch.name


def test_nested_directories_listed(structures: dict[str, FileStructure]) -> None:
    structure = structures["legacy/uproot-issue64.root"]
    directories = [item for item in structure.objects if item.kind == "directory"]
    assert len(directories) == 69
    assert structure.find("events/events").kind == "tree"


def test_zero_entry_tree(structures: dict[str, FileStructure]) -> None:
    tree = structures["legacy/uproot-issue335.root"].find("empty_tree")
    assert tree.entries == 0
    assert any("0 entries" in note for note in tree.notes)


def test_rntuple_fields(structures: dict[str, FileStructure]) -> None:
    ntuple = structures["cms/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"].find("Events")
    assert ntuple.kind == "rntuple"
    fields = {branch.name: branch for branch in ntuple.branches}
    assert {"nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"} <= set(fields)
    assert fields["Muon_pt"].type == "ROOT::VecOps::RVec<float>"
    assert fields["Muon_pt"].readable
    assert fields["Muon_pt"].compressed_bytes is not None
    assert fields["Muon_pt"].compressed_bytes > 0
    assert fields["Muon_pt"].uncompressed_bytes is not None
    assert fields["Muon_pt"].uncompressed_bytes >= fields["Muon_pt"].compressed_bytes
    assert fields["Muon_pt"].compression == "ZSTD(5)"


def test_csv_columns_and_notes(structures: dict[str, FileStructure]) -> None:
    table = structures["cms/Zmumu_Run2011A.csv"].find("Zmumu_Run2011A.csv")
    columns = {branch.name: branch.type for branch in table.branches}
    assert list(columns) == ["Run", "Event", "pt1", "eta1", "phi1", "Q1", "dxy1", "iso1", "pt2", "eta2", "phi2", "Q2", "dxy2", "iso2"]
    assert columns["pt1"] == "double"
    assert columns["Q1"] == "int64"
    assert any("CR LF" in note for note in table.notes)


def test_parquet_table(tmp_path: Path, shared_data: Path) -> None:
    events = uproot.open(shared_data / "cms/uproot-Zmumu.root")["events"].arrays(["pt1", "eta1", "M"])
    path = tmp_path / "zmumu.parquet"
    ak.to_parquet(events, path, compression="zstd")
    structure = inspect_file(path)
    table = structure.find("zmumu.parquet")
    assert structure.format == "parquet"
    assert table.entries == 2304
    assert [branch.name for branch in table.branches] == ["pt1", "eta1", "M"]
    assert table.branches[0].compression == "ZSTD"
    assert table.branches[0].compressed_bytes > 0
    values = read_branch_values(path, "zmumu.parquet", "M")
    np.testing.assert_allclose(values, ak.to_numpy(events.M))


def test_mc10_unreadable_judgement(structures: dict[str, FileStructure]) -> None:
    tree = structures["legacy/uproot-mc10events.root"].find("Events")
    judged = {branch.path for branch in tree.all_branches() if not branch.readable}
    assert judged == MC10_UNREADABLE
    assert sum(1 for _ in tree.all_branches()) == 687
    for branch in tree.all_branches():
        if not branch.readable:
            assert branch.reason, branch.path


def test_mc10_judgement_matches_real_reads(shared_data: Path, structures: dict[str, FileStructure]) -> None:
    tree = structures["legacy/uproot-mc10events.root"].find("Events")
    judged = {branch.path for branch in tree.all_branches() if not branch.readable}
    failed = set()
    with uproot.open(shared_data / "legacy/uproot-mc10events.root") as handle:
        events = handle["Events"]
        for key in events.keys(recursive=True):
            try:
                events[key].array()
            except Exception:  # noqa: BLE001 - any failure to read counts as unreadable
                failed.add(key)
    assert judged == failed


def test_aod_branches(structures: dict[str, FileStructure], shared_data: Path) -> None:
    events = structures[AOD_FILE].find("Events")
    branches = {branch.path: branch for branch in events.all_branches()}
    assert len(branches) == 5452
    assert branches[AOD_JET_PT].readable
    assert branches[AOD_JET_PT].type == "float[]"
    unknown = [branch for branch in branches.values() if branch.reason and "no interpretation" in branch.reason]
    assert len(unknown) == 717
    values = read_branch_values(shared_data / AOD_FILE, "Events", AOD_JET_PT)
    assert values.size > 0
    assert np.all(values > 0)


def test_read_branch_values_zmumu(shared_data: Path) -> None:
    values = read_branch_values(shared_data / "cms/uproot-Zmumu.root", "events", "M", max_entries=1000)
    assert values.shape == (1000,)
    assert values.dtype == np.float64
    jagged = read_branch_values(shared_data / "cms/uproot-HZZ.root", "events", "Muon_Px")
    counts = uproot.open(shared_data / "cms/uproot-HZZ.root")["events"]["NMuon"].array(library="np")
    assert jagged.size == counts.sum()


def test_read_branch_values_rejects_bitset(shared_data: Path) -> None:
    with pytest.raises(UnreadableFileError, match="triggerBits"):
        read_branch_values(shared_data / "legacy/uproot-mc10events.root", "Events", "Info/triggerBits")


def damage_first_basket(path: Path, branch: str, keep_header: bool) -> None:
    """Zero the first basket of ``branch`` of the TTree "events" in the ROOT file ``path``.

    With ``keep_header`` the basket's key and the zlib header stay, so decompression
    fails. Without it the key is zeroed too, so uproot cannot deserialise the basket.
    """
    with uproot.open(path) as handle:
        target = handle["events"][branch]
        seek = int(target.member("fBasketSeek")[0])
        size = int(target.member("fBasketBytes")[0])
    with path.open("r+b") as stream:
        start = seek
        if keep_header:
            stream.seek(seek + 14)  # fKeylen follows fNbytes (4 bytes), fVersion (2), fObjlen (4) and fDatime (4)
            key_length = int.from_bytes(stream.read(2), "big")
            start = seek + key_length + 9 + 2  # ROOT's 9-byte compression header, then the 2-byte zlib header
        stream.seek(start)
        stream.write(bytes(seek + size - start))


@pytest.fixture
def damaged_zmumu(shared_data: Path, tmp_path: Path) -> Path:
    """Return a copy of the Zmumu file whose E1 basket header and Type basket payload are zeroed."""
    path = tmp_path / "damaged.root"
    shutil.copyfile(shared_data / "cms/uproot-Zmumu.root", path)
    damage_first_basket(path, "E1", keep_header=False)
    damage_first_basket(path, "Type", keep_header=True)
    return path


def test_read_damaged_numeric_branch(damaged_zmumu: Path) -> None:
    with pytest.raises(UnreadableFileError) as caught:
        read_branch_values(damaged_zmumu, "events", "E1")
    message = caught.value.message
    assert "a basket cannot be deserialised" in message
    assert "may be truncated or damaged" in message
    assert "needs the software that wrote it" not in message


def test_read_damaged_string_branch(damaged_zmumu: Path) -> None:
    with pytest.raises(UnreadableFileError) as caught:
        read_branch_values(damaged_zmumu, "events", "Type")
    message = caught.value.message
    assert "(error)" not in message
    assert "decompression failed: Error -3" in message
    assert "may be truncated or damaged" in message


def test_read_damaged_file_other_branch(damaged_zmumu: Path) -> None:
    values = read_branch_values(damaged_zmumu, "events", "px1")
    assert values.shape == (2304,)


def test_text_file_not_root(tmp_path: Path) -> None:
    notes = tmp_path / "notes.root"
    notes.write_text("These are plain-text notes, not a ROOT file.\n")
    structure = inspect_file(notes)
    assert structure.error is not None
    assert "is not a ROOT file (it does not start with the bytes 'root')" in structure.error
    assert structure.objects == []


def test_read_branch_values_missing_branch(shared_data: Path) -> None:
    with pytest.raises(DataNotFoundError, match="no branch 'nope'"):
        read_branch_values(shared_data / "cms/uproot-Zmumu.root", "events", "nope")


def test_glob_and_directory_expansion(shared_data: Path) -> None:
    by_glob = inspect_path(str(shared_data / "cms" / "*.csv"))
    assert [Path(item.path).name for item in by_glob] == ["4mu_2012.csv", "Zmumu_Run2011A.csv"]
    by_directory = inspect_path(shared_data)
    assert len(by_directory) == 13


def test_cli_json(shared_data: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", "inspect", "--json", str(shared_data / "cms/uproot-Zmumu.root")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    documents = json.loads(result.stdout)
    assert len(documents) == 1
    tree = documents[0]["objects"][0]
    assert tree["path"] == "events"
    assert tree["kind"] == "tree"
    assert tree["entries"] == 2304
    first = tree["branches"][0]
    assert set(first) >= {"name", "type", "compressed_bytes", "uncompressed_bytes", "compression", "readable", "reason", "leaf", "children"}
