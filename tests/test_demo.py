"""The demo as a user runs it: the headless job in a real subprocess, then the sample check and the datasets the app opens on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*arguments: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CMSGEN_LOG_DIR=str(env_dir))
    return subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", *arguments], capture_output=True, text=True, timeout=600, env=env
    )


def test_demo_headless_main_job(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    cache_dir = tmp_path / "cache"
    result = run_cli(
        "demo", "--headless", "--runs-dir", str(runs_dir), "--cache-dir", str(cache_dir), "--events", "5000", "--epochs", "2",
        env_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (cache_dir / "sample" / "manifest.json").is_file()
    assert "report: dimuon: trainable" in result.stdout
    assert "train: finished" in result.stdout
    assert re.search(r"best w1_mass \d+(\.\d{1,3})? GeV", result.stdout), result.stdout
    assert "validate:" in result.stdout

    runs = [path for path in runs_dir.iterdir() if (path / "status.json").is_file()]
    assert len(runs) == 1
    assert json.loads((runs[0] / "status.json").read_text())["state"] == "finished"
    validation = json.loads((runs[0] / "validation.json").read_text())
    assert validation["summary"]["verdict"] in ("pass", "warn", "fail")


def test_demo_rejects_few_events(tmp_path: Path) -> None:
    result = run_cli("demo", "--headless", "--events", "10", "--cache-dir", str(tmp_path), env_dir=tmp_path)
    assert result.returncode == 5
    assert "--events 10 is invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_sample_check_imports_no_writer(tmp_path: Path) -> None:
    sample_dir = tmp_path / "sample"
    sample_dir.mkdir()
    (sample_dir / "manifest.json").write_text(json.dumps({"layouts": ["csv_pairs"]}))
    code = (
        "import sys; from pathlib import Path; from cmsgen.tui.commands.demo import ensure_sample; "
        f"print(ensure_sample(Path({str(tmp_path)!r}), 1000)); "
        "print(sorted(name for name in ('cmsgen.engine.sample', 'uproot', 'awkward', 'pyarrow') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == str(sample_dir)
    assert lines[-1] == "[]"


def test_demo_manifest_name_matches_writer() -> None:
    from cmsgen.engine.sample import MANIFEST_NAME
    from cmsgen.tui.commands.demo import SAMPLE_MANIFEST

    assert SAMPLE_MANIFEST == MANIFEST_NAME


def test_demo_opens_app_on_three_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmsgen.engine.sample import write_sample
    from cmsgen.tui.app import CmsgenApp
    from cmsgen.tui.commands.demo import run_demo

    write_sample(tmp_path / "sample", n_events=1000, seed=0, n_files=1)
    opened: list[list[Path]] = []
    monkeypatch.setattr(CmsgenApp, "run", lambda self: opened.append(self.dataset_paths))
    # The app itself does not run here, so it needs no terminal, which CI does not have.
    monkeypatch.setattr("cmsgen.tui.commands.app.require_terminal", lambda: None)
    run_demo(False, tmp_path / "runs", tmp_path, events=1000, epochs=1)
    assert opened == [[tmp_path / "sample" / layout for layout in ("csv_pairs", "tutorial", "nanoaod")]]


def test_demo_sample_datasets_without_layouts(tmp_path: Path) -> None:
    from cmsgen.tui.commands.demo import sample_datasets

    (tmp_path / "manifest.json").write_text("{}")
    assert sample_datasets(tmp_path) == [tmp_path]
