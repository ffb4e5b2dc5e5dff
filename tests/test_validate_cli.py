"""The `cmsgen-tui validate` command on a real training run and on real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.features import get_feature_set
from cmsgen.engine.validation import summary_rows
from cmsgen.tui.cli import app
from cmsgen.tui.commands.validate import parse_assignments, print_summary

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT_SECTIONS = {
    "schema_version", "created", "inputs", "settings", "summary", "warnings", "univariate", "multivariate", "physics",
    "memorisation",
}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO_ROOT,
        env={**os.environ, "COLUMNS": "120"},
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train the sample GAN config for one epoch on uproot-Zmumu.root and return the run directory."""
    runs_dir = tmp_path_factory.mktemp("runs")
    result = run_cli(
        "train", "sample_configs/gan_zmumu_2010.toml", "--epochs", "1", "--device", "cpu",
        "--runs-dir", str(runs_dir), "--name", "validate-me",
    )
    assert result.returncode == 0, result.stderr
    return runs_dir / "validate-me"


def test_validate_run_json_has_every_section(trained_run: Path) -> None:
    result = run_cli("validate", str(trained_run), "--json", "--seed", "1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == REPORT_SECTIONS
    assert report["inputs"]["run"] == "validate-me"
    assert report["inputs"]["n_train"] > 0
    names = {variable["name"] for variable in report["univariate"]}
    assert {"mu1_pt", "charge_product", "mass", "pair_pt", "pair_rapidity", "delta_r", "delta_phi"} <= names
    assert set(report["multivariate"]) == {"fpd", "kpd", "classifier_auc", "correlation_frobenius"}
    # The 2010 file contains 500 distinct events, so its test split may be too small for a peak fit.
    # The section must still be present, with a status.
    assert report["physics"]["z_peak"]["real"]["status"] in {"ok", "too_few_events"}
    assert report["physics"]["physicality"]
    assert "verdict" in report["memorisation"]
    assert "Traceback" not in result.stderr
    stored = json.loads((trained_run / "validation.json").read_text())
    assert stored["inputs"] == report["inputs"]
    assert report["inputs"]["checkpoint"] == "best"
    assert report["inputs"]["checkpoint_requested"] == "best"


def test_validate_run_table_and_markdown(trained_run: Path, tmp_path: Path) -> None:
    markdown = tmp_path / "logbook.md"
    result = CliRunner().invoke(app, ["validate", str(trained_run), "--events", "300", "--markdown", str(markdown), "--plots"])
    assert result.exit_code == 0, result.output
    assert "verdict:" in result.output
    assert "generated / real" in result.output
    # Printed into a pipe, the plots draw generated events with their own glyph.
    assert "•• generated" in result.output
    text = markdown.read_text()
    assert text.startswith("# Validation of validate-me")
    assert "| univariate | mass [GeV] |" in text
    assert "| univariate | mu1_phi [rad] | JSD [bit] |" in text


def test_validate_wide_plots_stay_whole(trained_run: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(trained_run), "--events", "300", "--plots", "--plot-width", "100", "--plot-height", "30"])

    assert result.exit_code == 0, result.output
    frame_lines = [line for line in result.output.splitlines() if "┤" in line]
    # The console of a pipe is 80 columns wide, and the plots are printed past it, not wrapped.
    assert frame_lines
    assert {len(line) for line in frame_lines} == {100}


def test_validate_files_form(shared_data: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "validate",
            "--real", str(shared_data / "cms" / "uproot-Zmumu.root"),
            "--generated", str(shared_data / "cms" / "Zmumu_Run2011A.csv"),
            "--feature-set", "dimuon",
            "--option", "opposite_charge=true",
            "--max-events", "1500",
            "--set", "classifier_epochs=3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # 500 distinct (run, event) pairs remain of the 2010 file's 2,304 rows after duplicates are dropped.
    assert report["inputs"]["n_real"] == 500
    assert report["inputs"]["n_generated"] == 1500
    assert report["inputs"]["generated_files"][0].endswith("Zmumu_Run2011A.csv")
    assert report["memorisation"]["verdict"] == "skipped"


def test_validate_without_inputs_fails() -> None:
    result = run_cli("validate")
    assert result.returncode == 5
    assert "give a RUN" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_missing_run_is_not_found(tmp_path: Path) -> None:
    result = run_cli("validate", "no-such-run", "--runs-dir", str(tmp_path))
    assert result.returncode == 3
    assert "no-such-run" in result.stderr


def test_validate_unknown_setting_rejected(shared_data: Path) -> None:
    path = str(shared_data / "cms" / "uproot-Zmumu.root")
    result = CliRunner().invoke(
        app, ["validate", "--real", path, "--generated", path, "--feature-set", "dimuon", "--set", "pass_facto=3"]
    )
    assert result.exit_code == 5
    assert "pass_facto" in result.output


def test_validate_figures_without_matplotlib(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes the import raise ImportError, as on a machine without the plots extra.
    monkeypatch.setitem(sys.modules, "mplhep", None)
    result = CliRunner().invoke(app, ["validate", str(trained_run), "--figures", str(tmp_path / "figures")])
    assert result.exit_code == 5
    assert "cmsgen-tui[plots]" in result.output
    assert "mplhep is missing" in result.output
    assert not (tmp_path / "figures").exists()


def test_validate_figures_written(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib, mplhep) is not installed")
    pytest.importorskip("mplhep", reason="the plots extra (matplotlib, mplhep) is not installed")
    figures = tmp_path / "figures"
    result = CliRunner().invoke(
        app,
        [
            "validate",
            "--real", str(shared_data / "cms" / "Zmumu_Run2011A.csv"),
            "--generated", str(shared_data / "cms" / "uproot-Zmumu.root"),
            "--feature-set", "dimuon",
            "--set", "classifier_epochs=2",
            "--figures", str(figures),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (figures / "mass.png").stat().st_size > 0
    assert (figures / "mass.pdf").stat().st_size > 0
    assert len(list(figures.glob("*.png"))) == len(list(figures.glob("*.pdf")))


def test_validate_without_best_checkpoint_records_last(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "no-best"
    shutil.copytree(trained_run, copy)
    (copy / "checkpoints" / "best.pt").unlink()
    result = run_cli("validate", str(copy), "--json", "--events", "200")
    assert result.returncode == 0, result.stderr
    assert "has no best checkpoint, so the last checkpoint is validated" in result.stderr
    report = json.loads(result.stdout)
    assert report["inputs"]["checkpoint"] == "last"
    assert report["inputs"]["checkpoint_requested"] == "best"
    assert json.loads((copy / "validation.json").read_text())["inputs"]["checkpoint"] == "last"


def test_validate_small_test_split_warns(trained_run: Path) -> None:
    result = run_cli("validate", str(trained_run), "--events", "200")
    assert result.returncode == 0, result.stderr
    assert "warning: the real sample has only" in result.stdout
    assert "training.test_fraction" in result.stdout
    # Without a terminal and without --json, progress goes to stderr as plain lines.
    assert "generating 200 events from the best checkpoint" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "--seed -1 is invalid: expected an integer from 0 to 4294967295"),
        (["--markdown", "/nonexistent/dir/r.md"], "--markdown /nonexistent/dir/r.md is invalid: folder /nonexistent/dir does not exist"),
        (["--plots", "--plot-width", "10"], "--plot-width 10 --plot-height 24 is invalid: a plot needs at least 20 columns"),
        (["--plots", "--plot-width", "0", "--plot-height", "-1"], "--plot-width 0 --plot-height -1 is invalid"),
        (["--events", "1000000000"], "--events 1000000000 is invalid: expected 20 to 10,000,000 events"),
        (["--events", "0"], "--events 0 is invalid: expected 20 to 10,000,000 events"),
        (["--checkpoint", "middle"], "--checkpoint 'middle' is invalid"),
    ],
)
def test_validate_run_rejects_bad_option(trained_run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    before = (trained_run / "validation.json").stat().st_mtime_ns if (trained_run / "validation.json").exists() else None
    result = CliRunner().invoke(app, ["validate", str(trained_run), *args])
    assert result.exit_code == 5, result.output
    assert message in " ".join(result.output.split())
    assert "unexpected" not in result.output
    after = (trained_run / "validation.json").stat().st_mtime_ns if (trained_run / "validation.json").exists() else None
    assert after == before


def test_validate_figures_folder_not_creatable(trained_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plots extra (matplotlib, mplhep) is not installed")
    pytest.importorskip("mplhep", reason="the plots extra (matplotlib, mplhep) is not installed")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["validate", str(trained_run), "--figures", str(blocker / "figures")])
    assert result.exit_code == 5, result.output
    assert f"--figures {blocker / 'figures'} is invalid: the folder cannot be created" in " ".join(result.output.split())


@pytest.mark.parametrize("value", ["0", "-3"])
def test_validate_max_events_names_option(shared_data: Path, value: str) -> None:
    path = str(shared_data / "cms" / "uproot-Zmumu.root")
    result = CliRunner().invoke(
        app, ["validate", "--real", path, "--generated", path, "--feature-set", "dimuon", "--max-events", value]
    )
    assert result.exit_code == 5
    assert f"--max-events {value} is invalid: expected at least 20" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fields=pt,eta,phi,mass,charge", ["pt", "eta", "phi", "mass", "charge"]),
        ('fields=["pt", "eta", "mass"]', ["pt", "eta", "mass"]),
        ("fields=pt", ["pt"]),
        ("n=4", 4),
        ("opposite_charge=false", False),
        ("collection=jets", "jets"),
    ],
)
def test_parse_assignments_lists(text: str, expected: object) -> None:
    key = text.partition("=")[0]
    assert parse_assignments([text], "--option") == {key: expected}


def test_parse_assignments_rejects_broken_list() -> None:
    with pytest.raises(ConfigError, match="not a TOML list"):
        parse_assignments(["fields=[pt"], "--option")


def test_validate_files_form_with_field_list(shared_data: Path) -> None:
    path = str(shared_data / "cms" / "4mu_2012.csv")
    result = CliRunner().invoke(
        app,
        [
            "validate", "--real", path, "--generated", path, "--feature-set", "leading-objects",
            "--option", "n=4", "--option", "fields=pt,eta,phi,mass,charge", "--set", "classifier_epochs=2", "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "mu4_charge" in report["inputs"]["columns"]
    checks = {check["name"] for check in report["physics"]["physicality"]}
    assert {"energy_above_pt", "mass_nonnegative", "allowed_values"} <= checks


def test_validate_files_form_counts_selection(shared_data: Path, tmp_path: Path) -> None:
    from cmsgen.engine.output import write_events
    from cmsgen.engine.validation.physics import toy_dimuon_events

    events = toy_dimuon_events(2_000, seed=3, same_sign_fraction=0.05)
    n_same_sign = int(np.count_nonzero(events[:, 6] > 0))
    generated = write_events(tmp_path / "generated.parquet", events, get_feature_set("dimuon").columns, seed=1)
    result = CliRunner().invoke(
        app,
        [
            "validate", "--real", str(shared_data / "cms" / "Zmumu_Run2011A.csv"), "--generated", str(generated),
            "--feature-set", "dimuon", "--max-events", "1500", "--set", "classifier_epochs=2", "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    counts = report["inputs"]["selection"]["generated"]
    assert counts == {
        "n_read": 2_000, "n_removed_by_selection": n_same_sign, "n_duplicates_removed": 0, "n_selected": 2_000 - n_same_sign,
    }
    assert report["inputs"]["selection"]["real"]["n_read"] == 10_583
    assert report["inputs"]["n_generated"] == 1_500
    assert [warning["code"] for warning in report["warnings"]] == ["selection_removed"]
    assert f"removed {n_same_sign} of 2000 generated events" in report["warnings"][0]["message"]

    table = CliRunner().invoke(
        app,
        [
            "validate", "--real", str(shared_data / "cms" / "Zmumu_Run2011A.csv"), "--generated", str(generated),
            "--feature-set", "dimuon", "--max-events", "1500", "--set", "classifier_epochs=2",
        ],
    )
    assert f"generated: 2000 events read, {n_same_sign} removed by the selection" in table.stdout


def test_summary_fits_80_columns(trained_run: Path) -> None:
    result = run_cli("validate", str(trained_run), "--json", "--events", "200")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    console = Console(width=80, record=True, color_system=None)
    print_summary(report, console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "mu1_phi [rad]" in text
    assert "JSD [bit]" in text
    assert "pair_mass_squared" in text
    assert "the invariant mass is real" not in text
    # One line per figure row, plus titles, headers, notes and the closing lines. No row wraps.
    rows = summary_rows(report)
    assert len(lines) <= len(rows) + 40
    flat = " ".join(text.split())
    for row in rows:
        if row["note"]:
            assert " ".join(row["note"].split()) in flat


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--option", "n=0"], "--option n=0 is invalid"),
        (["--option", "n=4", "--option", "n=2"], "--option n is given twice"),
        (["--option", "fields=pt,pt"], "each once"),
    ],
)
def test_validate_bad_feature_options(shared_data: Path, options: list[str], expected: str) -> None:
    data = str(shared_data / "cms" / "4mu_2012.csv")
    result = CliRunner().invoke(
        app, ["validate", "--real", data, "--generated", data, "--feature-set", "leading-objects", *options]
    )

    assert result.exit_code == 5
    assert expected in result.output


def test_z_rows_carry_own_verdicts() -> None:
    from cmsgen.engine.validation.summary import _z_peak_rows

    fit = {"status": "ok", "mass": 91.0, "mass_err": 0.1, "gamma": 1.2, "gamma_err": 0.2, "sigma": 1.0, "sigma_err": 0.2}
    z_peak = {
        "real": fit,
        "generated": fit,
        "pulls": {"mass": 3.1, "gamma": -0.46, "sigma": None},
        "verdicts": {"mass": "warn", "gamma": "pass"},
        "verdict": "warn",
    }
    rows = _z_peak_rows(z_peak)

    assert [row["verdict"] for row in rows] == ["warn", "pass", "skipped"]
