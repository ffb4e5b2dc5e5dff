"""The train, runs and generate commands, run as real ``python -m cmsgen.tui`` subprocesses.

The module takes about one minute on two CPU cores (one short flow run, one run stopped by SIGTERM).
"""

from __future__ import annotations

import json
import shutil
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from cmsgen.engine.training.config import dumps_toml
from cmsgen.engine.training.runs import RunDirectory

RNTUPLE_2012 = "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
WAIT_SECONDS = 180  # Maximum wait for a subprocess condition. The usual wait is a few seconds.


@contextmanager
def train_process(config: Path, cwd: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Start ``python -m cmsgen.tui train CONFIG ARGS`` in ``cwd``, and kill it on exit if it still runs."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cmsgen.tui", "train", str(config), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for_metrics(process: subprocess.Popen[str], run: RunDirectory, rows: int) -> None:
    """Wait until ``run`` has ``rows`` metrics rows, and check that ``process`` still runs then."""
    deadline = time.monotonic() + WAIT_SECONDS
    while len(run.metrics()) < rows and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()[1]
    assert len(run.metrics()) >= rows


def cli(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cmsgen.tui ARGS`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def write_flow_config(folder: Path, data: Path, **training: object) -> Path:
    table = {
        "data": {"paths": [str(data)], "feature_set": "dimuon"},
        "model": {"family": "flow", "transforms": 2, "hidden_features": [16, 16], "bins": 4},
        "training": {"batch_size": 64, "lr": 1e-3, "log_every": 2, "metric_events": 300, "device": "cpu", **training},
    }
    path = folder / "flow.toml"
    path.write_text(dumps_toml(table), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cms_data: Path) -> Path:
    """Train a tiny flow for two epochs through the CLI and return the working folder."""
    folder = tmp_path_factory.mktemp("cli")
    config = write_flow_config(folder, cms_data / RNTUPLE_2012, epochs=2)

    done = cli("train", config, "--run-dir", "runs", "--name", "tiny", cwd=folder)

    assert done.returncode == 0, done.stderr
    (folder / "train.stdout").write_text(done.stdout, encoding="utf-8")
    return folder


def test_train_writes_finished_run(trained: Path) -> None:
    run = RunDirectory(trained / "runs" / "tiny")

    assert run.status()["state"] == "finished"
    assert run.checkpoint_path("best").is_file()
    assert len(run.metrics()) >= 2


def test_train_prints_plain_progress(trained: Path) -> None:
    lines = (trained / "train.stdout").read_text(encoding="utf-8").splitlines()

    assert lines[0].startswith("reading features: ")
    assert lines[0].endswith(" entries)")
    start = next(line for line in lines if not line.startswith("reading features: "))
    assert start.startswith("training flow on dimuon in run tiny:")
    step_lines = [line for line in lines if line.startswith("step ")]
    assert len(step_lines) >= 2
    assert "epoch " in step_lines[-1]
    assert "loss" in step_lines[-1]
    # stdout is a pipe here, so no progress bar or terminal escape codes are written.
    assert "\x1b[" not in "\n".join(lines)


def test_train_warns_about_small_sample(tmp_path: Path, cms_data: Path) -> None:
    config = write_flow_config(tmp_path, cms_data / "poet2011_myoutput_50ev_run167675.root", epochs=1)

    done = cli("train", config, "--run-dir", "runs", "--name", "small", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "fewer than the batch size 64" in warnings[0]
    assert "expect a poor model and a noisy w1_mass" in warnings[1]
    status = RunDirectory(tmp_path / "runs" / "small").status()
    assert len(status["warnings"]) == 2


def test_train_bad_config_value_exit_5(tmp_path: Path, cms_data: Path) -> None:
    config = write_flow_config(tmp_path, cms_data / RNTUPLE_2012, batch_size=-4)

    done = cli("train", config, cwd=tmp_path)

    assert done.returncode == 5
    assert done.stderr.strip() == "Error: training.batch_size = -4 is invalid: expected an integer >= 1"
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "runs").exists()


def test_train_missing_config_exit_3(tmp_path: Path) -> None:
    done = cli("train", tmp_path / "absent.toml", cwd=tmp_path)

    assert done.returncode == 3
    assert "absent.toml not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_train_sigterm_stops_with_checkpoint(tmp_path: Path, cms_data: Path) -> None:
    config = write_flow_config(tmp_path, cms_data / RNTUPLE_2012, epochs=500)
    run = RunDirectory(tmp_path / "runs" / "long")
    with train_process(config, tmp_path, "--run-dir", "runs", "--name", "long") as process:
        wait_for_metrics(process, run, 3)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=WAIT_SECONDS)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "stopped" in stdout
    status = run.status()
    assert status["state"] == "stopped"
    assert "SIGTERM" in status["message"]
    state = torch.load(run.checkpoint_path("last"), weights_only=True)
    assert state["step"] == status["step"]
    assert state["step"] < status["total_steps"]


def test_train_resume_continues(trained: Path) -> None:
    done = cli("train", "--resume", "tiny", "--run-dir", "runs", "--epochs", "3", cwd=trained)

    assert done.returncode == 0, done.stderr
    run = RunDirectory(trained / "runs" / "tiny")
    status = run.status()
    assert status["epoch"] == 3
    assert status["state"] == "finished"
    assert run.config()["training"]["epochs"] == 3
    assert [r["epoch"] for r in run.metrics() if "w1_mass" in r] == [1, 2, 3]


@pytest.mark.parametrize("option", [["--dask"], ["--scheduler", "tcp://127.0.0.1:8786"], ["--data", "other.root"]])
def test_train_resume_rejects_new_input(trained: Path, option: list[str]) -> None:
    status_before = (trained / "runs" / "tiny" / "status.json").read_text()

    done = cli("train", "--resume", "tiny", "--run-dir", "runs", *option, cwd=trained)

    assert done.returncode == 5
    assert "--resume continues a run with its stored config" in done.stderr
    assert "Traceback" not in done.stderr
    assert (trained / "runs" / "tiny" / "status.json").read_text() == status_before


def test_runs_json_lists_run(trained: Path) -> None:
    done = cli("runs", "runs", "--json", cwd=trained)

    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [row["name"] for row in rows] == ["tiny"]
    assert rows[0]["model"] == "flow"
    assert rows[0]["state"] == "finished"
    assert rows[0]["progress"] == 1.0
    assert rows[0]["best_metric"] > 0


def test_runs_names_copied_run_by_folder(trained: Path, tmp_path: Path) -> None:
    shutil.copytree(trained / "runs" / "tiny", tmp_path / "runs" / "tiny-copy")
    done = cli("runs", str(tmp_path / "runs"), "--json", cwd=trained)

    assert done.returncode == 0, done.stderr
    assert [row["name"] for row in json.loads(done.stdout)] == ["tiny-copy"]


def test_runs_table_and_missing_dir(trained: Path) -> None:
    table = cli("runs", "runs", cwd=trained)
    missing = cli("runs", "no-such-dir", cwd=trained)

    assert table.returncode == 0
    assert "tiny" in table.stdout
    assert "finished" in table.stdout
    assert missing.returncode == 3
    assert "no-such-dir not found" in missing.stderr


def test_generate_root_nanoaod(trained: Path) -> None:
    (trained / "out").mkdir(exist_ok=True)
    done = cli("generate", "runs/tiny", "-n", "500", "-o", "out/events.root", "--seed", "2", cwd=trained)

    assert done.returncode == 0, done.stderr
    tree = uproot.open(trained / "out" / "events.root")["Events"]
    assert tree.num_entries == 500
    assert set(tree.keys()) == {"nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"}
    events = tree.arrays()
    assert ak.all(events.nMuon == 2)
    assert ak.all(events.Muon_pt > 0)
    assert ak.all(abs(events.Muon_phi) <= math.pi)
    assert set(np.unique(ak.to_numpy(ak.flatten(events.Muon_charge)))) <= {-1, 1}
    assert np.allclose(ak.to_numpy(ak.flatten(events.Muon_mass)), 0.1056583755)


def test_generate_default_path_and_overwrite(trained: Path) -> None:
    first = cli("generate", "tiny", "--run-dir", "runs", "-n", "100", "--checkpoint", "last", cwd=trained)
    again = cli("generate", "tiny", "--run-dir", "runs", "-n", "100", "--checkpoint", "last", cwd=trained)

    target = trained / "runs" / "tiny" / "samples" / "last-seed0-n100.root"
    assert first.returncode == 0, first.stderr
    assert target.is_file()
    assert again.returncode == 5
    assert "already exists" in again.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["generate", "nothing-here", "-n", "10"], 3, "run 'nothing-here' not found"),
        (["generate", "runs/tiny", "-n", "10", "-o", "x.txt"], 5, "expected .root, .parquet or .csv"),
        (["generate", "runs/tiny", "-n", "0", "-o", "x.root"], 5, "-n 0 is invalid"),
        (["generate", "runs/tiny", "--checkpoint", "first", "-o", "x.root"], 5, "--checkpoint 'first' is invalid"),
        (
            ["generate", "runs/tiny", "-n", "10", "-o", "missing/dir/z.root"],
            3,
            "folder missing/dir of the output file does not exist. Create it first",
        ),
    ],
)
def test_generate_bad_input(
    trained: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    # In-process through typer's runner: the same command code, without a Python start-up per case.
    from typer.testing import CliRunner

    from cmsgen.tui.cli import app

    monkeypatch.chdir(trained)
    done = CliRunner().invoke(app, args)

    assert done.exit_code == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_train_nan_loss_exit_6(tmp_path: Path, cms_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process, so that the model's step can be replaced by one that returns a NaN loss.
    from typer.testing import CliRunner

    from cmsgen.engine.models.flow import SplineFlow
    from cmsgen.tui.cli import app

    real_step = SplineFlow.training_step

    def step_with_nan(self: SplineFlow, batch: torch.Tensor, step: int) -> dict[str, float]:
        losses = real_step(self, batch, step)
        return {**losses, "nll": float("nan")} if step == 3 else losses

    monkeypatch.setattr(SplineFlow, "training_step", step_with_nan)
    config = write_flow_config(tmp_path, cms_data / RNTUPLE_2012, epochs=2)
    monkeypatch.chdir(tmp_path)

    done = CliRunner().invoke(app, ["train", str(config), "--name", "nan"])

    assert done.exit_code == 6
    assert done.stderr.count("\n") == 1
    assert "nll = nan at step 4 is not finite" in done.stderr
    assert "Traceback" not in done.stderr
    assert RunDirectory(tmp_path / "runs" / "nan").status()["state"] == "failed"


def test_train_progress_counts_epochs_from_one(trained: Path) -> None:
    lines = (trained / "train.stdout").read_text(encoding="utf-8").splitlines()
    step_lines = [line for line in lines if line.startswith("step ")]

    epochs = [int(line.split("  epoch ")[1].split("/")[0]) for line in step_lines]
    assert epochs[0] == 1
    assert epochs[-1] == 2
    assert "finished 2 epochs" in "\n".join(lines)


def test_generate_best_fallback_warns(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(trained / "runs" / "tiny", copy)
    (copy / "checkpoints" / "best.pt").unlink()

    done = cli("generate", copy, "-n", "10", "-o", tmp_path / "events.csv", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert f"Warning: run {copy} has no best checkpoint, so the last checkpoint is used." in done.stderr
    assert (tmp_path / "events.csv").is_file()


def test_train_binary_config_exit_5(tmp_path: Path, cms_data: Path) -> None:
    done = cli("train", cms_data / "uproot-Zmumu.root", cwd=tmp_path)

    assert done.returncode == 5
    assert "is not a TOML text file (it looks like a ROOT file)" in done.stderr
    assert "the data with --data" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_unavailable_device_names_option(tmp_path: Path, cms_data: Path) -> None:
    config = write_flow_config(tmp_path, cms_data / RNTUPLE_2012, epochs=1)

    done = cli("train", config, "--device", "cuda", "--run-dir", "runs", cwd=tmp_path)

    assert done.returncode == 5
    assert done.stderr.strip() == "Error: --device 'cuda' is invalid: no CUDA device is available. Use 'auto' or 'cpu'."
    assert not (tmp_path / "runs").exists()


def test_train_interrupted_during_setup(tmp_path: Path, cms_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process, so that Ctrl-C can arrive at a known point: while the features are read.
    from typer.testing import CliRunner

    from cmsgen.tui.cli import app
    from cmsgen.tui.commands import train as train_module

    def interrupt_while_reading(self: object, progress: object) -> None:
        if getattr(progress, "kind", "") == "load":
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module.PlainReporter, "__call__", interrupt_while_reading)
    config = write_flow_config(tmp_path, cms_data / RNTUPLE_2012, epochs=1)
    monkeypatch.chdir(tmp_path)

    done = CliRunner().invoke(app, ["train", str(config), "--name", "early"])
    resumed = CliRunner().invoke(app, ["train", "--resume", "early"])

    assert done.exit_code == 130
    assert done.stderr.strip() == (
        "Error: interrupted before training started, so the run has no checkpoint to resume. "
        "Start a new run with the same config."
    )
    assert RunDirectory(tmp_path / "runs" / "early").status()["state"] == "failed"
    assert resumed.exit_code == 5
    assert "has no checkpoint, because it ended before training started" in resumed.stderr


def test_train_layout_file_and_glob(tmp_path: Path, cms_data: Path) -> None:
    # A copy of the 2011 CSV whose columns no built-in layout maps, and a layout file that maps them.
    lines = (cms_data / "Zmumu_Run2011A.csv").read_text(encoding="utf-8").splitlines()[:2001]
    lines[0] = "r,e,pt_1,eta_1,phi_1,q_1,dxy_1,iso_1,pt_2,eta_2,phi_2,q_2,dxy_2,iso_2"
    (tmp_path / "renamed-a.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    layout = tmp_path / "renamed.toml"
    layout.write_text(
        'name = "renamed-pairs"\npriority = 20\n[detect]\nrequired = ["pt_1", "eta_1", "phi_1", "q_1", "pt_2"]\n'
        '[event]\nrun = "r"\nevent = "e"\n[collections.muons]\nkind = "flat"\nindices = [1, 2]\nspecies = "muon"\n'
        '[collections.muons.fields]\npt = "pt_{i}"\neta = "eta_{i}"\nphi = "phi_{i}"\ncharge = "q_{i}"\n',
        encoding="utf-8",
    )
    config = write_flow_config(tmp_path, tmp_path / "renamed-*.csv", epochs=1)

    without = cli("train", config, "--run-dir", "runs", "--name", "without", cwd=tmp_path)
    done = cli("train", config, "--layout-file", layout, "--run-dir", "runs", "--name", "with", cwd=tmp_path)

    assert without.returncode == 4
    assert "--layout-file FILE" in without.stderr
    assert done.returncode == 0, done.stderr
    assert "finished 1 epoch (" in done.stdout
    data = RunDirectory(tmp_path / "runs" / "with").config()["data"]
    assert data["paths"] == [str(tmp_path / "renamed-a.csv")]
    assert data["layout_file"] == [str(layout)]


def test_runs_table_keeps_names_whole(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cmsgen.tui.cli import app

    long_name = "flow-dimuon-with-a-name-longer-than-a-terminal-line-20240131-142501"
    (tmp_path / long_name).mkdir()
    status = {
        "state": "finished",
        "model": "flow",
        "feature_set": "dimuon",
        "progress": 1.0,
        "step": 62,
        "total_steps": 62,
        "message": "finished 2 epochs (62 steps), with a message long enough to wrap an 80-column terminal",
    }
    (tmp_path / long_name / "status.json").write_text(json.dumps(status), encoding="utf-8")
    (tmp_path / "no-status").mkdir()
    (tmp_path / "no-status" / "config.toml").write_text("", encoding="utf-8")

    done = CliRunner().invoke(app, ["runs", str(tmp_path)])

    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert any(line.startswith(long_name + " ") and line.endswith("80-column terminal") for line in lines)
    no_status = next(line for line in lines if line.startswith("no-status "))
    assert "None" not in no_status
    assert all(line == line.rstrip() for line in lines)


def test_format_losses_gan_shows_critic_loss_once() -> None:
    from cmsgen.tui.commands.train import format_losses

    text = format_losses({"loss": 9.276, "loss_critic": 9.276, "loss_generator": 2.5, "w1_mass": 11.1})

    assert text == "loss_critic 9.276  loss_generator 2.5  w1_mass 11.1 GeV"
    assert format_losses({"loss": 6.5, "kl": 1.0}) == "loss 6.5  kl 1"
    assert format_losses({"loss": 11.49, "reconstruction": 6.927, "kl": 1.062, "mmd": 0.452}) == "loss 11.49  reconstruction 6.927  kl 1.062  mmd 0.452"


def test_progress_bar_keeps_step_count_at_80_columns() -> None:
    import io

    from rich.console import Console

    from cmsgen.engine.training.trainer import Progress
    from cmsgen.tui.commands.train import RichReporter

    reporter = RichReporter(console=Console(file=io.StringIO(), width=80))
    status = {"total_steps": 9999, "step": 0, "epoch": 0, "total_epochs": 30}
    record = {"step": 9000, "epoch": 27, "loss": 7.408, "reconstruction": 6.584, "kl": 4.479, "w1_mass": 11.12}
    reporter(Progress("start", {}, status))
    reporter(Progress("step", record, status))
    output = Console(file=io.StringIO(), width=80, color_system=None)
    output.print(reporter.bar.make_tasks_table(reporter.bar.tasks))
    reporter.close()

    line = output.file.getvalue().splitlines()[0]
    assert line.startswith("epoch 28/30 ")
    assert " 9000/9999 " in line
    assert "loss 7.408" in line
    assert len(line) <= 80


def test_closed_stdout_stops_quietly(trained: Path) -> None:
    # runs prints with typer.echo, whose write fails with BrokenPipeError once the reader is gone.
    process = subprocess.Popen(
        [sys.executable, "-m", "cmsgen.tui", "runs", "runs"], cwd=trained, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)

    assert process.returncode in (0, 1)
    assert "Traceback" not in stderr
    assert "unexpected" not in stderr


@pytest.mark.parametrize("arguments", [("app", "."), ("demo",)])
def test_app_without_terminal_exits(tmp_path: Path, arguments: tuple[str, ...]) -> None:
    done = cli(*arguments, "--runs-dir", "runs", cwd=tmp_path, timeout=60)

    assert done.returncode == 5
    assert done.stderr.strip() == (
        "Error: the app needs a terminal, but standard input or output is not one. Run it in a terminal, "
        "or use the headless commands (report, train, validate, demo --headless) in scripts."
    )
