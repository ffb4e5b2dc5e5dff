"""Bad input files through real ``cmsgen-tui`` subprocesses: one sentence, the right exit code, no traceback."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import uproot

from cmsgen.engine.errors import EXIT_NO_DATA, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREADABLE
from cmsgen.engine.sources.inspect import inspect_file


@dataclass(frozen=True)
class BadInput:
    """Bad-input case. ``make`` builds the input and returns (CLI argument, file name that stderr must contain)."""

    name: str
    make: Callable[[Path, Path], tuple[str, str]]
    exit_code: int


def _missing(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    path = tmp_path / "no_such_file.root"
    return str(path), path.name


def _empty_directory(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    path = tmp_path / "empty_folder"
    path.mkdir()
    return str(path), path.name


def _unmatched_glob(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    return str(tmp_path / "run*.root"), "run*.root"


def _not_root(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    path = tmp_path / "notes.root"
    path.write_text("These are plain-text notes, not a ROOT file.\n" * 20)
    return str(path), path.name


def _zero_bytes(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    path = tmp_path / "zero_bytes.root"
    path.touch()
    return str(path), path.name


def _truncated(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    source = (shared_data / "cms/uproot-HZZ.root").read_bytes()
    path = tmp_path / "truncated_HZZ.root"
    path.write_bytes(source[: len(source) // 2])
    return str(path), path.name


def _no_trees(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    path = tmp_path / "histograms_only.root"
    with uproot.recreate(path) as handle:
        handle["mass"] = np.histogram(np.linspace(60.0, 120.0, 100), bins=20)
    return str(path), path.name


def _zero_entries(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    path = tmp_path / "uproot-issue335.root"
    shutil.copy(shared_data / "legacy/uproot-issue335.root", path)
    return str(path), path.name


def _not_csv(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    path = tmp_path / "binary.csv"
    path.write_bytes(bytes(range(256)) * 8 + b'\n"unterminated\n')
    return str(path), path.name


CASES = [
    BadInput("missing path", _missing, EXIT_NOT_FOUND),
    BadInput("empty directory", _empty_directory, EXIT_NOT_FOUND),
    BadInput("unmatched glob", _unmatched_glob, EXIT_NOT_FOUND),
    BadInput("text file named .root", _not_root, EXIT_UNREADABLE),
    BadInput("zero-byte file", _zero_bytes, EXIT_UNREADABLE),
    BadInput("truncated ROOT file", _truncated, EXIT_UNREADABLE),
    BadInput("file without trees", _no_trees, EXIT_UNREADABLE),
    BadInput("tree with zero entries", _zero_entries, EXIT_NO_DATA),
    BadInput("binary file named .csv", _not_csv, EXIT_UNREADABLE),
]


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_sentence(stderr: str, name: str) -> None:
    """Assert that stderr is one line that names ``name``, ends with a period and contains no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert name in lines[0]
    assert lines[0].rstrip().endswith(".")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_inspect_bad_input(case: BadInput, tmp_path: Path, shared_data: Path) -> None:
    argument, name = case.make(tmp_path, shared_data)
    result = _run("inspect", argument)
    assert result.returncode == case.exit_code, result.stderr
    _assert_one_sentence(result.stderr, name)


def test_inspect_unreadable_branch(shared_data: Path) -> None:
    path = shared_data / "legacy/uproot-mc10events.root"
    result = _run("inspect", str(path), "--branch", "Events:Info/triggerBits")
    assert result.returncode == EXIT_UNREADABLE
    _assert_one_sentence(result.stderr, "triggerBits")
    assert path.name in result.stderr


def test_inspect_marks_unreadable_branches(shared_data: Path) -> None:
    path = shared_data / "legacy/uproot-mc10events.root"
    result = _run("inspect", str(path))
    assert result.returncode == EXIT_OK
    assert "12 unreadable" in result.stdout
    _assert_one_sentence(result.stderr, path.name)


def test_dataset_with_one_bad_file(tmp_path: Path, shared_data: Path) -> None:
    shutil.copy(shared_data / "cms/uproot-Zmumu.root", tmp_path / "good_Zmumu.root")
    shutil.copy(shared_data / "cms/Zmumu_Run2011A.csv", tmp_path / "good_2011.csv")
    _truncated(tmp_path, shared_data)
    result = _run("inspect", str(tmp_path))
    assert result.returncode == EXIT_OK, result.stderr
    assert "good_Zmumu.root" in result.stdout
    assert "good_2011.csv" in result.stdout
    assert "2,304 entries" in result.stdout
    _assert_one_sentence(result.stderr, "truncated_HZZ.root")


def test_dataset_all_files_bad(tmp_path: Path, shared_data: Path) -> None:
    _truncated(tmp_path, shared_data)
    _not_root(tmp_path, shared_data)
    result = _run("inspect", str(tmp_path))
    assert result.returncode == EXIT_UNREADABLE
    assert "Traceback" not in result.stderr
    assert "truncated_HZZ.root" in result.stderr
    assert "notes.root" in result.stderr


def _damaged_rntuple_page(tmp_path: Path, shared_data: Path) -> tuple[str, str]:
    """Copy the 2012 RNTuple with one byte flipped inside the first page of its fourth column."""
    source = shared_data / "cms/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
    with uproot.open(source) as handle:
        page = handle["Events"].page_link_list[0][3].pages[0]
    data = bytearray(source.read_bytes())
    data[page.locator.offset + 10] ^= 0xFF
    path = tmp_path / "damaged_rntuple.root"
    path.write_bytes(bytes(data))
    return str(path), path.name


REPORT_CASES = [case for case in CASES if case.exit_code != EXIT_NO_DATA]
REPORT_CASES.append(BadInput("damaged RNTuple page", _damaged_rntuple_page, EXIT_UNREADABLE))


def test_inspect_notes_damaged_rntuple(tmp_path: Path, shared_data: Path) -> None:
    argument, name = _damaged_rntuple_page(tmp_path, shared_data)
    result = _run("inspect", argument)

    assert result.returncode == EXIT_OK, result.stderr
    # The note opens the RNTuple's lines, so the 80-column wrapping leaves its start whole.
    assert "note: the RNTuple is damaged: page 1 of field Muon_phi" in result.stdout
    structure = inspect_file(argument)
    (rntuple,) = structure.objects
    readable = {branch.name: branch.readable for branch in rntuple.branches}
    assert readable["Muon_phi"] is False
    assert readable["Muon_pt"] is True


def test_damaged_rntuple_header_named(tmp_path: Path, shared_data: Path) -> None:
    source = shared_data / "cms/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
    data = bytearray(source.read_bytes())
    # Byte 500 lies in the RNTuple's anchor or header, which uproot checks with checksums.
    data[500] ^= 0xFF
    path = tmp_path / "damaged_anchor.root"
    path.write_bytes(bytes(data))
    result = _run("report", str(path))

    assert result.returncode == EXIT_UNREADABLE
    _assert_one_sentence(result.stderr, path.name)
    assert "RNTuple Events (a checksum or consistency check failed)" in result.stderr


def test_inspect_branch_of_damaged_rntuple(tmp_path: Path, shared_data: Path) -> None:
    argument, name = _damaged_rntuple_page(tmp_path, shared_data)
    result = _run("inspect", argument, "--branch", "Events:Muon_pt")

    assert result.returncode == EXIT_UNREADABLE
    _assert_one_sentence(result.stderr, name)
    assert "does not match its checksum" in result.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("cmsgen.tui.commands.report") is None,
    reason="the report command (tui/commands/report.py) is not written yet",
)
@pytest.mark.parametrize("case", REPORT_CASES, ids=[case.name for case in REPORT_CASES])
def test_report_bad_input(case: BadInput, tmp_path: Path, shared_data: Path) -> None:
    argument, name = case.make(tmp_path, shared_data)
    result = _run("report", argument)
    assert result.returncode == case.exit_code, result.stderr
    _assert_one_sentence(result.stderr, name)
