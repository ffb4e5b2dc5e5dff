"""The missing-field report on the real files: exact facts, and the command's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmsgen.engine.report import build_report, render_markdown


def make_damaged_dataset(folder: Path, zmumu: Path) -> Path:
    """Write a copy of ``zmumu`` with 100 kB zeroed in the middle and a text file named notes.root into ``folder``.

    The damaged copy still opens and its branch names identify the csv-pairs layout,
    but reading its events fails. The file notes.root is not a ROOT file at all.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = bytearray(zmumu.read_bytes())
    data[40_000:140_000] = bytes(100_000)
    (folder / "uproot-Zmumu.root").write_bytes(bytes(data))
    (folder / "notes.root").write_text("These are notes, not a ROOT file.\n")
    return folder


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cmsgen.tui", *args], capture_output=True, text=True, timeout=300)


def field_status(report: dict, collection: str, name: str) -> dict:
    return next(row for row in report["fields"] if row["collection"] == collection and row["field"] == name)


def check(report: dict, name_part: str, collection: str) -> dict:
    return next(c for c in report["consistency"] if name_part in c["check"] and c["collection"] == collection)


def test_zmumu_2010_mass_agrees_with_stored(cms_data: Path) -> None:
    report = build_report(cms_data / "uproot-Zmumu.root").to_dict()
    assert report["n_events"] == 2304
    mass = check(report, "stored M vs pair mass", "event")
    assert mass["n_compared"] == 2304
    assert mass["tolerance"] == pytest.approx(1e-3)
    assert mass["n_disagree"] <= 0.01 * 2304
    assert field_status(report, "muons", "mass")["status"] == "derived"
    # The 2010 file lists several muon-pair candidates per event: (run, event) repeats.
    assert report["duplicates"]["checked"] is True
    assert report["duplicates"]["n_duplicates"] > 0


def test_zmumu_2011_csv_mass_from_pdg(cms_data: Path) -> None:
    report = build_report(cms_data / "Zmumu_Run2011A.csv").to_dict()
    assert report["n_events"] == 10_583
    mass = field_status(report, "muons", "mass")
    assert mass["status"] == "derived"
    assert "PDG mass of the muon" in mass["derivation"]
    assert field_status(report, "muons", "pt")["status"] == "present"
    dimuon = next(v for v in report["verdict"] if v["feature_set"] == "dimuon")
    assert dimuon["trainable"] is True
    assert 10_000 < dimuon["n_events"] <= 10_583


def test_hep_tutorial_multiplicity(cms_data: Path) -> None:
    import uproot

    report = build_report(cms_data / "uproot-HZZ.root").to_dict()
    n_muon = uproot.open(cms_data / "uproot-HZZ.root")["events/NMuon"].array(library="np")
    histogram = report["multiplicities"]["muons"]["histogram"]
    for count in set(n_muon.tolist()):
        assert histogram[str(count)] == int((n_muon == count).sum())
    assert report["multiplicities"]["muons"]["empty"] == int((n_muon == 0).sum())
    assert field_status(report, "muons", "pt")["status"] == "derived"
    assert "hypot(px, py)" in field_status(report, "muons", "pt")["derivation"]
    assert field_status(report, "jets", "charge")["status"] == "missing"


def test_poet_counter_mismatch_reported(cms_data: Path) -> None:
    report = build_report(cms_data / "poet2012_myoutput_100ev_run195397.root").to_dict()
    assert report["n_events"] == 100
    muons = check(report, "numbermuon vs number of stored muons", "muons")
    assert muons["n_disagree"] > 0
    electrons = check(report, "numberelectron vs number of stored electrons", "electrons")
    assert electrons["n_disagree"] == 0


def test_aod_lists_unreadable_products(legacy_data: Path) -> None:
    report = build_report(legacy_data / "opendatatrigger_EDM_AOD_Run2010B_Jet_2ev.root").to_dict()
    assert report["layout"]["name"] == "cmssw-aod"
    assert report["n_events"] == 2
    assert report["multiplicities"]["jets"]["histogram"] == {"5": 1, "14": 1}
    unreadable = {u["branch"] for u in report["unreadable"]}
    assert "recoPFCandidates_particleFlow__RECO." in unreadable
    assert "recoPFJets_ak5PFJets__RECO." not in unreadable
    assert all("POET" in u["route"] for u in report["unreadable"])
    jets = next(v for v in report["verdict"] if v["feature_set"].startswith("leading-objects[jets"))
    assert jets["trainable"] is True


def test_aod_branch_list_indexes_readable(legacy_data: Path) -> None:
    """BranchListIndexes is a plain std::vector<uint16_t>: uproot reads it, so the report must not call it unreadable."""
    import uproot

    from cmsgen.engine.sources.inspect import inspect_file

    path = legacy_data / "opendatatrigger_EDM_AOD_Run2010B_Jet_2ev.root"
    values = uproot.open(path)["Events/BranchListIndexes"].array(library="ak")
    assert values.tolist() == [[0, 1, 2], [0, 1, 2]]
    files_screen_verdict = next(b for b in inspect_file(path).find("Events").branches if b.name == "BranchListIndexes")
    assert files_screen_verdict.readable

    report = build_report(path).to_dict()
    unreadable = {u["branch"] for u in report["unreadable"]}
    assert "BranchListIndexes" not in unreadable
    assert "EventAuxiliary" in unreadable
    note = next(note for note in report["notes"] if "BranchListIndexes" in note)
    assert "can be read without CMSSW" in note
    assert "BranchIDLists of the MetaData tree" in note
    assert "BranchListIndexes" in render_markdown(report).split("## Notes")[1]


def test_damaged_file_keeps_field_table(tmp_path: Path, cms_data: Path) -> None:
    """A layout found but no event read: the canonical fields are listed, and every output states that no events were read."""
    from cmsgen.engine.report.builder import NO_EVENTS_NOTE

    report = build_report(make_damaged_dataset(tmp_path / "damaged", cms_data / "uproot-Zmumu.root")).to_dict()
    assert report["layout"]["name"] == "csv-pairs"
    assert report["n_events"] == 0
    assert [(row["field"], row["status"]) for row in report["fields"]] == [
        ("pt", "present"), ("eta", "present"), ("phi", "present"), ("mass", "derived"), ("charge", "present"),
    ]
    assert field_status(report, "muons", "pt")["source"] == ["pt1", "pt2"]
    assert report["quality"] == []
    assert NO_EVENTS_NOTE in report["notes"]
    dimuon = next(v for v in report["verdict"] if v["feature_set"] == "dimuon")
    assert dimuon["trainable"] is False
    assert dimuon["reason"].startswith("no events were read")
    damaged = [u for u in report["unreadable"] if u["file"].endswith("uproot-Zmumu.root")]
    assert len(damaged) == 1
    assert "Reading entries" in damaged[0]["reason"]
    assert any(u["file"].endswith("notes.root") for u in report["unreadable"])

    markdown = render_markdown(report)
    fields_section = markdown.split("## Canonical fields")[1].split("## Value quality")[0]
    assert "| muons | pt | present | pt1, pt2 |" in fields_section
    quality_section = markdown.split("## Value quality")[1].split("## Stored against derived")[0]
    assert "No events were read" in quality_section
    assert "(none)" not in quality_section


def test_field_table_of_dataset_layout_only(cms_data: Path) -> None:
    """With files of two layouts, the field statuses are those of the dataset's layout, whose events are read."""
    report = build_report([cms_data / "uproot-Zmumu.root", cms_data / "uproot-HZZ.root"]).to_dict()
    assert report["layout"]["name"] == "hep-tutorial"
    pt = field_status(report, "muons", "pt")
    assert pt["status"] == "derived"
    assert "hypot(px, py)" in pt["derivation"]
    assert pt["files_differing"] == []


def test_mc10events_unreadable_branches(legacy_data: Path) -> None:
    report = build_report(legacy_data / "uproot-mc10events.root").to_dict()
    unreadable = sorted(u["branch"] for u in report["unreadable"])
    assert len(unreadable) == 12
    assert "Info" in unreadable
    assert "triggerBits" in unreadable
    assert sum(name.endswith(".hltMatchBits") for name in unreadable) == 10
    read = [row for row in report["raw_branch_quality"] if "error" not in row]
    assert len(read) > 600


def test_zero_entry_tree(legacy_data: Path) -> None:
    report = build_report(legacy_data / "uproot-issue335.root").to_dict()
    assert report["n_events"] == 0
    assert any("zero entries" in note for note in report["notes"])
    assert all(not v["trainable"] for v in report["verdict"])


def test_nested_directories(legacy_data: Path) -> None:
    report = build_report(legacy_data / "uproot-issue64.root").to_dict()
    assert report["dataset"]["files"][0]["main_tree"] == "events/events"
    assert report["dataset"]["files"][0]["entries"] == 500


def test_one_bad_file_does_not_stop_report(tmp_path: Path, cms_data: Path) -> None:
    (tmp_path / "good.root").write_bytes((cms_data / "uproot-Zmumu.root").read_bytes())
    (tmp_path / "bad.root").write_text("not ROOT at all")
    report = build_report(tmp_path).to_dict()
    assert report["n_events"] == 2304
    bad = [u for u in report["unreadable"] if u["file"].endswith("bad.root")]
    assert len(bad) == 1
    assert "not a ROOT file" in bad[0]["reason"]


def test_drift_between_files(tmp_path: Path, cms_data: Path) -> None:
    lines = (cms_data / "Zmumu_Run2011A.csv").read_text().splitlines()
    (tmp_path / "a.csv").write_text("\n".join(lines[:101]) + "\n")
    header = lines[0].split(",")
    drop = header.index("iso2")
    trimmed = [",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in [lines[0], *lines[101:201]]]
    (tmp_path / "b.csv").write_text("\n".join(trimmed) + "\n")
    report = build_report(tmp_path).to_dict()
    assert report["n_events"] == 200
    assert report["drift"][0]["missing"] == ["iso2"]


def test_markdown_has_sections(cms_data: Path) -> None:
    text = render_markdown(build_report(cms_data / "uproot-HZZ.root"))
    for heading in ("## Canonical fields", "## Value quality", "## Verdict", "## Unreadable"):
        assert heading in text


def test_report_cli_json(cms_data: Path, tmp_path: Path) -> None:
    markdown = tmp_path / "report.md"
    result = run_cli("report", str(cms_data / "Zmumu_Run2011A.csv"), "--json", "--markdown", str(markdown))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert data["n_events"] == 10_583
    assert markdown.read_text().startswith("# Missing-field report")


def test_report_cli_missing_path(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path / "missing.root"))
    assert result.returncode == 3
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_report_cli_bad_feature_set(cms_data: Path) -> None:
    result = run_cli("report", str(cms_data / "uproot-Zmumu.root"), "--feature-set", "trijet")
    assert result.returncode == 5
    assert "trijet" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--layout", "no-such-layout", "Layout 'no-such-layout' is unknown"),
        ("--layout-file", "/nonexistent/layout.toml", "not found"),
    ],
)
def test_report_cli_bad_layout(cms_data: Path, option: str, value: str, expected: str) -> None:
    result = run_cli("report", str(cms_data / "uproot-Zmumu.root"), option, value)
    assert result.returncode == 5
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("event_offset", [0, 2**40])
def test_duplicate_finder_counts(event_offset: int) -> None:
    import awkward as ak

    from cmsgen.engine.report.checks import DuplicateFinder

    finder = DuplicateFinder()
    finder.update(ak.Array({"run": [1, 1, 2], "event": [event_offset + 5, event_offset + 5, event_offset + 5]}))
    finder.update(ak.Array({"run": [1, 3], "event": [event_offset + 5, event_offset + 7]}))
    result = finder.to_dict()
    assert result["n_events_checked"] == 5
    assert result["n_duplicates"] == 2
    assert result["n_repeated_keys"] == 1
    assert result["examples"] == [{"run": 1, "event": event_offset + 5}]


def test_other_layout_files_noted(cms_data: Path) -> None:
    """Files of another layout than the dataset's are named in the notes, since their events are not read."""
    report = build_report([cms_data / "uproot-Zmumu.root", cms_data / "uproot-HZZ.root"]).to_dict()
    assert report["layout"]["name"] == "hep-tutorial"
    assert report["n_events"] == 2421
    expected = f"{cms_data / 'uproot-Zmumu.root'}: its layout csv-pairs differs from the dataset's layout hep-tutorial"
    assert any(note.startswith(expected) for note in report["notes"])


def test_drift_lists_shortened_in_terminal(cms_data: Path) -> None:
    done = run_cli("report", str(cms_data / "rootinbinder_aod2nanoaod_10000ev_run195397.root"), str(cms_data / "nanoAOD_2015_CMS_Open_Data_ttbar.root"))
    assert done.returncode == 0, done.stderr
    drift = done.stdout[done.stdout.index("Drift:") :]
    assert " more" in drift
    assert "CorrT1METJet_rawPt" not in drift


def test_cli_says_no_values_checked(tmp_path: Path, cms_data: Path) -> None:
    dataset = make_damaged_dataset(tmp_path / "damaged", cms_data / "uproot-Zmumu.root")
    result = run_cli("report", str(dataset))

    assert "No events were read, so no values were checked." in result.stdout
    assert "No null, NaN" not in result.stdout


NEXT_STEP = "write a layout TOML file that maps its branches and pass it with --layout-file FILE"
RNTUPLE = "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"


def verdict_reason(report: dict, label: str) -> str:
    return next(v["reason"] for v in report["verdict"] if v["feature_set"] == label)


@pytest.mark.parametrize("name", ["uproot-mc10events.root", "uproot-issue64.root"])
def test_no_layout_verdict_gives_next_step(legacy_data: Path, name: str) -> None:
    report = build_report(legacy_data / name).to_dict()

    assert report["dataset"]["files"][0]["readable"] is True
    assert report["layout"]["name"] is None
    expected = f"no known layout matches the branches of {name}. To read its events, {NEXT_STEP}"
    assert [v["reason"] for v in report["verdict"]] == [expected] * 4
    assert report["fields"] == []
    assert report["multiplicities"] == {}

    fields_section = render_markdown(report).split("## Canonical fields")[1].split("## Value quality")[0]
    assert "No known layout matches the branch names, so the report has no canonical fields." in fields_section


def test_no_layout_verdict_names_every_file(tmp_path: Path, legacy_data: Path) -> None:
    for name in ("a.root", "b.root"):
        (tmp_path / name).write_bytes((legacy_data / "uproot-issue64.root").read_bytes())

    report = build_report(tmp_path).to_dict()

    expected = (
        "no known layout matches the branches of the files a.root, b.root. To read their events, write a layout TOML "
        "file that maps their branches and pass it with --layout-file FILE"
    )
    assert verdict_reason(report, "dimuon") == expected


def test_cli_prints_no_empty_tables(legacy_data: Path) -> None:
    result = run_cli("report", str(legacy_data / "uproot-issue64.root"))

    assert result.returncode == 0, result.stderr
    assert "No canonical fields: no known layout matches the branch names." in result.stdout
    assert "Canonical fields" not in result.stdout
    assert "Multiplicities" not in result.stdout
    assert "no readable file with a known layout" not in result.stdout
    assert "--layout-file" in result.stdout


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (RNTUPLE, "the file has no jets branches (missing Jet_pt, Jet_eta, Jet_phi, Jet_mass)"),
        ("poet2011_myoutput_50ev_run167675.root", "the file has no jets tree (missing myjets/Events)"),
        ("uproot-Zmumu.root", "the layout csv-pairs has no jets"),
        ("4mu_2012.csv", "the layout four-lepton has no jets"),
    ],
)
def test_jets_verdict_blames_file_or_layout(cms_data: Path, name: str, expected: str) -> None:
    """A layout that maps jets is not blamed for a file without jet branches, but a layout that maps none is."""
    report = build_report(cms_data / name).to_dict()

    assert verdict_reason(report, "leading-objects[jets, n=2]") == expected


@pytest.mark.parametrize("name", ["nanoAOD_2015_CMS_Open_Data_ttbar.root", "poet2012_myoutput_100ev_run195397.root"])
def test_jets_trainable_where_file_has_them(cms_data: Path, name: str) -> None:
    """The layouts nanoaod and poet map jets: files that store them give trainable jets."""
    report = build_report(cms_data / name).to_dict()

    jets = next(v for v in report["verdict"] if v["feature_set"] == "leading-objects[jets, n=2]")
    assert jets["trainable"] is True
    assert "events pass the selection (2 jets with finite pt, eta, phi, mass); fewer than 200 events give a poor model" in jets["reason"]


def test_rntuple_electrons_reason_names_fields(cms_data: Path) -> None:
    report = build_report(cms_data / RNTUPLE).to_dict()

    assert verdict_reason(report, "leading-objects[electrons, n=2]") == "electrons field(s) eta, phi, pt are neither stored nor derivable"


def test_jets_verdict_counts_files(tmp_path: Path, cms_data: Path) -> None:
    for name in ("a.root", "b.root"):
        (tmp_path / name).write_bytes((cms_data / RNTUPLE).read_bytes())

    report = build_report(tmp_path).to_dict()

    expected = "none of the 2 files has jets branches (missing Jet_pt, Jet_eta, Jet_phi, Jet_mass)"
    assert verdict_reason(report, "leading-objects[jets, n=2]") == expected


def write_zmumu_copies(folder: Path, zmumu: Path) -> dict[str, np.ndarray]:
    """Write the numeric branches of ``zmumu`` unchanged to a.root and b.parquet in ``folder``, and return them as numpy arrays."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import uproot

    tree = uproot.open(zmumu)["events"]
    arrays = {name: tree[name].array(library="np") for name in tree.keys() if name != "Type"}
    with uproot.recreate(folder / "a.root") as output:
        output["events"] = arrays
    pq.write_table(pa.table(arrays), folder / "b.parquet")
    return arrays


def test_drift_ignores_type_spellings(tmp_path: Path, cms_data: Path) -> None:
    """ROOT's double and int32_t equal Arrow's double and int32. A CSV file's column types are not compared."""
    write_zmumu_copies(tmp_path, cms_data / "uproot-Zmumu.root")

    report = build_report(tmp_path).to_dict()
    with_csv = build_report([cms_data / "uproot-Zmumu.root", cms_data / "Zmumu_Run2011A.csv"]).to_dict()

    assert [(f["format"], f["layout"]) for f in report["dataset"]["files"]] == [("root", "csv-pairs"), ("parquet", "csv-pairs")]
    assert report["drift"] == []
    assert len(with_csv["drift"]) == 1
    assert with_csv["drift"][0]["missing"] == ["dxy1", "dxy2", "iso1", "iso2"]
    assert with_csv["drift"][0]["type_changes"] == []


def test_drift_reports_float32_against_float64(tmp_path: Path, cms_data: Path) -> None:
    import uproot

    arrays = write_zmumu_copies(tmp_path, cms_data / "uproot-Zmumu.root")
    (tmp_path / "b.parquet").unlink()
    with uproot.recreate(tmp_path / "b.root") as output:
        output["events"] = {**arrays, "pt1": arrays["pt1"].astype(np.float32)}

    report = build_report(tmp_path).to_dict()

    assert [f["layout"] for f in report["dataset"]["files"]] == ["csv-pairs", "csv-pairs"]
    assert len(report["drift"]) == 1
    assert report["drift"][0]["type_changes"] == [{"branch": "pt1", "reference": "double", "file": "float"}]


def test_cli_marks_cut_source_list(cms_data: Path) -> None:
    report = build_report(cms_data / "4mu_2012.csv").to_dict()
    result = run_cli("report", str(cms_data / "4mu_2012.csv"))

    assert field_status(report, "muons", "pt")["source"] == ["pt1", "pt2", "pt3", "pt4"]
    assert result.returncode == 0, result.stderr
    assert "pt1, pt2, pt3 and 1 more" in result.stdout
    assert "Q1, Q2, Q3 and 1 more" in result.stdout
