"""Every defect planted in the synthetic sample is found by the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmsgen.engine.report import build_report
from cmsgen.engine.sample import write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sample")
    write_sample(directory, n_events=3000, seed=3)
    return directory


def quality(report: dict, collection: str, name: str) -> dict:
    return next(q for q in report["quality"] if q["collection"] == collection and q["field"] == name)


def test_csv_pairs_defects(sample: Path) -> None:
    report = build_report(sample / "csv_pairs").to_dict()
    assert report["layout"]["name"] == "csv-pairs"
    assert quality(report, "muons", "eta")["nan"] == 5
    assert quality(report, "muons", "pt")["sentinel"] == 4
    assert quality(report, "muons", "pt")["out_of_range"] == 2
    assert quality(report, "muons", "phi")["out_of_range"] == 3
    assert report["duplicates"]["n_duplicates"] == 3
    assert any(d["missing"] == ["M"] for d in report["drift"])
    assert any("zero entries" in note for note in report["notes"])


def test_tutorial_defects(sample: Path) -> None:
    report = build_report(sample / "tutorial").to_dict()
    assert report["layout"]["name"] == "hep-tutorial"
    assert quality(report, "muons", "energy")["nan"] == 5
    assert quality(report, "muons", "energy")["out_of_range"] == 3
    assert quality(report, "met", "px")["sentinel"] == 4
    assert any("Muon_Iso" in d["missing"] for d in report["drift"])
    assert any("zero entries" in note for note in report["notes"])


def test_nanoaod_defects(sample: Path) -> None:
    report = build_report(sample / "nanoaod").to_dict()
    assert report["layout"]["name"] == "nanoaod"
    assert quality(report, "muons", "eta")["nan"] == 5
    assert quality(report, "met", "pt")["sentinel"] == 4
    assert quality(report, "muons", "pt")["out_of_range"] == 3
    assert quality(report, "muons", "phi")["out_of_range"] == 2
    assert report["duplicates"]["n_duplicates"] == 3
    assert any("Muon_mass" in d["missing"] for d in report["drift"])
    mass = next(r for r in report["fields"] if r["collection"] == "muons" and r["field"] == "mass")
    assert any(f["status"] == "derived" for f in mass["files_differing"])
    assert any("zero entries" in note for note in report["notes"])
    dimuon = next(v for v in report["verdict"] if v["feature_set"] == "dimuon")
    assert dimuon["trainable"] is True
    assert 2900 < dimuon["n_events"] <= 3000


@pytest.mark.parametrize("layout_dir", ["csv_pairs", "tutorial", "nanoaod"])
def test_merged_chunk_totals_equal_serial(sample: Path, layout_dir: str) -> None:
    """Totals counted chunk by chunk and merged in order give the serial report exactly."""
    from cmsgen.engine.report.builder import ReportTotals, finish_report, verdict_sets_for
    from cmsgen.engine.sources import open_dataset

    serial = build_report(sample / layout_dir, step_size=700).to_dict()
    dataset = open_dataset(sample / layout_dir)
    verdict_sets = verdict_sets_for(None)
    merged = ReportTotals()
    for entry in dataset.readable_files:
        for chunk in dataset.iterate_file(entry, 700):
            part = ReportTotals()
            part.update(chunk, verdict_sets)
            merged.merge(part)
    parallel = finish_report(dataset, sample / layout_dir, verdict_sets, merged, 0.0).to_dict()
    serial.pop("elapsed_seconds")
    parallel.pop("elapsed_seconds")
    assert parallel == serial
