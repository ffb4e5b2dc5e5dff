"""The synthetic sample: files, physics, planted defects, determinism and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow.csv as pa_csv
import pytest
import uproot

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.sample import MANIFEST_NAME, SENTINEL, Z_MASS, SampleManifest, write_sample

N_EVENTS = 3000
CHUNK_SIZE = 700  # several chunks per file, so chunked writing is exercised


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    directory = tmp_path_factory.mktemp("sample")
    return write_sample(directory, n_events=N_EVENTS, seed=7, chunk_size=CHUNK_SIZE)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    table = pa_csv.read_csv(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _read_tree(path: Path, tree: str) -> ak.Array:
    with uproot.open(path) as handle:
        return handle[tree].arrays()


def test_manifest_lists_files(sample: SampleManifest) -> None:
    manifest = json.loads((sample.directory / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 7
    assert manifest["n_events"] == N_EVENTS
    assert len(manifest["files"]) == 12
    for layout in ("csv_pairs", "tutorial", "nanoaod"):
        entries = [item["entries"] for item in manifest["files"] if item["layout"] == layout]
        assert sum(entries) == N_EVENTS, layout
        assert entries.count(0) == 1, layout
    for item in manifest["files"]:
        assert (sample.directory / item["file"]).is_file(), item["file"]


def test_entries_on_disk(sample: SampleManifest) -> None:
    for item in sample.files:
        path = sample.directory / item.file
        if item.tree is None:
            rows = pa_csv.read_csv(path).num_rows
        else:
            with uproot.open(path) as handle:
                rows = handle[item.tree].num_entries
        assert rows == item.entries, item.file


def test_dimuon_physics(sample: SampleManifest) -> None:
    events = _read_tree(sample.directory / "nanoaod/nanoaod_1.root", "Events")
    assert ak.all(events.nMuon == 2)
    pt = ak.to_numpy(events.Muon_pt)
    eta = ak.to_numpy(events.Muon_eta)
    charge = ak.to_numpy(events.Muon_charge)
    assert np.all(pt > 15.0)
    assert np.all(np.abs(eta) < 2.4)
    assert np.all(charge[:, 0] == -charge[:, 1])
    assert np.all(pt[:, 0] >= pt[:, 1])

    table = _read_csv(sample.directory / "csv_pairs/dimuon_1.csv")
    energy = table["E1"] + table["E2"]
    momentum_squared = (table["px1"] + table["px2"]) ** 2 + (table["py1"] + table["py2"]) ** 2 + (table["pz1"] + table["pz2"]) ** 2
    mass = np.sqrt(energy**2 - momentum_squared)
    in_peak = mass[(mass > 81.0) & (mass < 101.0)]
    assert abs(np.median(in_peak) - Z_MASS) < 1.0
    assert 0.5 < len(in_peak) / len(mass) < 0.95


def test_csv_mass_column_matches_momenta(sample: SampleManifest) -> None:
    table = _read_csv(sample.directory / "csv_pairs/dimuon_2.csv")
    energy = table["E1"] + table["E2"]
    momentum = np.sqrt((table["px1"] + table["px2"]) ** 2 + (table["py1"] + table["py2"]) ** 2 + (table["pz1"] + table["pz2"]) ** 2)
    np.testing.assert_allclose(np.sqrt(energy**2 - momentum**2), table["M"], rtol=1e-3, atol=0.02)


def _values(sample: SampleManifest, layout: str, file: str, branch: str) -> np.ndarray:
    path = sample.directory / file
    if layout == "csv_pairs":
        return _read_csv(path)[branch]
    tree = "events" if layout == "tutorial" else "Events"
    array = _read_tree(path, tree)[branch]
    return ak.to_numpy(array[:, 0]) if array.ndim > 1 else ak.to_numpy(array)


@pytest.mark.parametrize("layout", ["csv_pairs", "tutorial", "nanoaod"])
def test_planted_defects_present(sample: SampleManifest, layout: str) -> None:
    defects = [item for item in sample.defects if item.layout == layout]
    kinds = {item.kind for item in defects}
    assert {"missing_branch", "nan", "sentinel", "zero_entries", "out_of_range"} <= kinds
    for defect in defects:
        path = sample.directory / defect.file
        if defect.kind == "zero_entries":
            continue  # checked by test_entries_on_disk
        if defect.kind == "missing_branch":
            names = pa_csv.read_csv(path).column_names if layout == "csv_pairs" else uproot.open(path)[_tree(layout)].keys()
            assert defect.branch not in names, defect
            continue
        if defect.kind == "duplicate_events":
            run_name, event_name = defect.branch.split(",")
            runs = _values(sample, layout, defect.file, run_name)
            events = _values(sample, layout, defect.file, event_name)
            pairs = np.stack([runs, events], axis=1).astype(np.int64)
            assert len(pairs) - len(np.unique(pairs, axis=0)) == defect.count, defect
            continue
        values = _values(sample, layout, defect.file, defect.branch).astype(np.float64)
        if defect.kind == "nan":
            assert int(np.isnan(values).sum()) == defect.count, defect
        elif defect.kind == "sentinel":
            assert int((values == SENTINEL).sum()) == defect.count, defect
        elif "phi" in defect.branch:
            assert int((np.abs(values) > np.pi).sum()) == defect.count, defect
        else:
            assert int((values < 0).sum()) == defect.count, defect


def _tree(layout: str) -> str:
    return "events" if layout == "tutorial" else "Events"


def test_defect_free_file_is_clean(sample: SampleManifest) -> None:
    events = _read_tree(sample.directory / "nanoaod/nanoaod_1.root", "Events")
    pairs = np.stack([ak.to_numpy(events.run), ak.to_numpy(events.event)], axis=1).astype(np.int64)
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    assert not np.any(np.isnan(ak.to_numpy(events.Muon_eta)))


def test_same_seed_same_files(tmp_path: Path) -> None:
    first = write_sample(tmp_path / "a", n_events=500, seed=3, layouts=("csv_pairs", "nanoaod"), n_files=2)
    second = write_sample(tmp_path / "b", n_events=500, seed=3, layouts=("csv_pairs", "nanoaod"), n_files=2)
    write_sample(tmp_path / "c", n_events=500, seed=4, layouts=("csv_pairs", "nanoaod"), n_files=2)
    assert first.to_dict() == second.to_dict()
    csv_a = (tmp_path / "a/csv_pairs/dimuon_0.csv").read_bytes()
    assert csv_a == (tmp_path / "b/csv_pairs/dimuon_0.csv").read_bytes()
    assert csv_a != (tmp_path / "c/csv_pairs/dimuon_0.csv").read_bytes()
    tree_a = _read_tree(tmp_path / "a/nanoaod/nanoaod_0.root", "Events")
    tree_b = _read_tree(tmp_path / "b/nanoaod/nanoaod_0.root", "Events")
    assert tree_a.fields == tree_b.fields
    for name in tree_a.fields:
        np.testing.assert_array_equal(ak.flatten(tree_a[name], axis=None), ak.flatten(tree_b[name], axis=None), err_msg=name)


def test_progress_reaches_one(tmp_path: Path) -> None:
    fractions: list[float] = []
    write_sample(tmp_path, n_events=900, layouts=("nanoaod",), chunk_size=200, progress=lambda fraction, _: fractions.append(fraction))
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert len(fractions) >= 5


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="number of events 0"):
        write_sample(tmp_path, n_events=0)
    with pytest.raises(ConfigError, match="layouts"):
        write_sample(tmp_path, n_events=10, layouts=("delphes",))


def test_cli_summary(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", "sample", str(tmp_path / "out"), "--events", "600", "--seed", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "nanoaod" in result.stdout
    assert "manifest.json" in result.stdout
    assert (tmp_path / "out" / MANIFEST_NAME).is_file()


def test_cli_rejects_zero_events(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", "sample", str(tmp_path), "--events", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 5
    assert "number of events 0" in result.stderr
    assert "Traceback" not in result.stderr
