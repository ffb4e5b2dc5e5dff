"""The headless demo as a user runs it: a real subprocess writing the sample, training and validating."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


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
