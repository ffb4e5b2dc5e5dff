"""The `cmsgen-tui validate` command on a real training run and on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmsgen.tui.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT_SECTIONS = {"schema_version", "created", "inputs", "settings", "summary", "univariate", "multivariate", "physics", "memorisation"}


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


def test_validate_run_table_and_markdown(trained_run: Path, tmp_path: Path) -> None:
    markdown = tmp_path / "logbook.md"
    result = CliRunner().invoke(app, ["validate", str(trained_run), "--events", "300", "--markdown", str(markdown), "--plots"])
    assert result.exit_code == 0, result.output
    assert "verdict:" in result.output
    assert "generated / real" in result.output
    text = markdown.read_text()
    assert text.startswith("# Validation of validate-me")
    assert "| univariate | mass [GeV] |" in text


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
