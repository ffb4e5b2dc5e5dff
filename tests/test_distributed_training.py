"""Data-parallel training with two CPU ranks (gloo), against one process with the same global batch.

Every run is real and short: small networks, a few hundred events, a few epochs. Ranks are real
processes, started by ``cmsgen-tui train --nproc 2`` subprocesses or by the same launcher called
here, and they meet on 127.0.0.1 at a free port. The module took about 80 s on two CPU cores.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_runs_cli import WAIT_SECONDS, train_process, wait_for_metrics
from test_runs_cli import cli as run_cli

from cmsgen.engine.errors import ConfigError, RunFailedError
from cmsgen.engine.sample import write_sample
from cmsgen.engine.training import distributed
from cmsgen.engine.training.config import dumps_toml, load_config
from cmsgen.engine.training.runs import RunDirectory
from cmsgen.engine.training.trainer import Progress, resume_run, start_run
from cmsgen.tui.commands.train import train_rank

ZMUMU = "uproot-Zmumu.root"
# Tolerance between one process and two ranks: the ranks sum the same terms in another order.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-5
# Keys of a metrics row that are measured, not computed.
TIMING_KEYS = ("time", "events_per_second")

SMALL_MODELS: dict[str, dict[str, Any]] = {
    "gan": {"generator_features": [32, 32], "critic_features": [32, 32], "n_critic": 5, "ema_decay": 0.9},
    "gan-mmd": {
        "generator_features": [32, 32],
        "critic_features": [32, 32],
        "n_critic": 2,
        "ema_decay": 0.9,
        "mmd_weight": 5.0,
    },
    "vae": {"encoder_features": [32, 32], "decoder_features": [32, 32], "kl_warmup_steps": 10},
    "vae-mmd": {"encoder_features": [32, 32], "decoder_features": [32, 32], "kl_warmup_steps": 10, "mmd_weight": 10.0},
    "flow": {"transforms": 2, "hidden_features": [16, 16], "bins": 4},
}


def write_config(folder: Path, data: Path, model: str, **training: Any) -> Path:
    """Write a CPU training config for a small model of ``model`` (a SMALL_MODELS key) and return its path."""
    table = {
        "data": {"paths": [str(data)], "feature_set": "dimuon"},
        "model": {"family": model.split("-")[0], **SMALL_MODELS[model]},
        "training": {
            "epochs": 3,
            "batch_size": 64,
            "lr": 1e-3,
            "log_every": 2,
            "metric_events": 500,
            "device": "cpu",
            **training,
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model}.toml"
    path.write_text(dumps_toml(table), encoding="utf-8")
    return path


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cmsgen.tui ARGS`` and return the finished process, waiting at most WAIT_SECONDS."""
    return run_cli(*args, cwd=cwd, timeout=WAIT_SECONDS)


def train_request(config: Path | None, runs_dir: Path, name: str | None, **options: Any) -> dict[str, Any]:
    """Return the arguments of ``train_rank``, as the CLI builds them."""
    return {
        "config_path": config,
        "data": None,
        "runs_dir": runs_dir,
        "name": name,
        "resume": options.get("resume"),
        "device": None,
        "epochs": options.get("epochs"),
    }


def launch_two_ranks(request: dict[str, Any]) -> distributed.LaunchOutcome:
    """Train with two ranks through the launcher of ``--nproc`` and return what the ranks reported."""
    outcome = distributed.launch_local(2, train_rank, request)
    assert outcome.failure is None, outcome.failure
    return outcome


def stop_after_step(config: Path, runs_dir: Path, name: str, step: int) -> dict[str, Any]:
    """Train as one rank and request a stop on rank 0 once ``step`` is logged (an entry point for the launcher)."""
    context = distributed.init_from_environment()
    assert context is not None
    try:
        trainer = start_run(load_config(config), runs_dir=runs_dir, name=name, distributed=context)
        if context.is_main:

            def request_stop(update: Progress) -> None:
                if update.kind == "step" and update.record["step"] == step:
                    trainer.request_stop("test stop")

            trainer.callback = request_stop
        result = trainer.run()
        return {"exit_code": 0, "state": result.state, "step": result.step}
    finally:
        distributed.destroy(context)


def nan_loss_on_rank_one(config: Path, runs_dir: Path, name: str, step: int) -> dict[str, Any]:
    """Train as one rank whose loss becomes NaN at ``step`` on rank 1 alone (an entry point for the launcher)."""
    context = distributed.init_from_environment()
    assert context is not None
    try:
        trainer = start_run(load_config(config), runs_dir=runs_dir, name=name, distributed=context)
        original_set_up = trainer._set_up

        def set_up_with_nan() -> None:
            original_set_up()
            real_step = trainer.model.training_step

            def step_with_nan(batch: torch.Tensor, index: int) -> dict[str, float]:
                losses = real_step(batch, index)
                if context.rank == 1 and index + 1 == step:
                    losses["loss"] = float("nan")
                return losses

            trainer.model.training_step = step_with_nan  # type: ignore[method-assign]

        trainer._set_up = set_up_with_nan  # type: ignore[method-assign]
        try:
            trainer.run()
        except RunFailedError as error:
            return {"exit_code": error.exit_code, "failed": error.message}
        return {"exit_code": 0}
    finally:
        distributed.destroy(context)


def model_state(run: RunDirectory) -> dict[str, torch.Tensor]:
    return torch.load(run.checkpoint_path("last"), weights_only=True)["model"]


def assert_same_models(expected: RunDirectory, actual: RunDirectory) -> None:
    expected_state, actual_state = model_state(expected), model_state(actual)
    assert actual_state.keys() == expected_state.keys()
    for name, tensor in expected_state.items():
        assert torch.allclose(actual_state[name], tensor, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE), name


def assert_same_metrics(expected: RunDirectory, actual: RunDirectory) -> None:
    expected_rows, actual_rows = expected.metrics(), actual.metrics()
    assert [row["step"] for row in actual_rows] == [row["step"] for row in expected_rows]
    for expected_row, actual_row in zip(expected_rows, actual_rows, strict=True):
        assert actual_row.keys() == expected_row.keys()
        for key, value in expected_row.items():
            if key in TIMING_KEYS or value is None:
                continue
            assert math.isclose(actual_row[key], value, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE), (
                f"step {expected_row['step']} {key}: {actual_row[key]} != {value}"
            )


# ---------------------------------------------------------------------- two ranks against one process


@pytest.fixture(scope="module")
def zmumu_runs(tmp_path_factory: pytest.TempPathFactory, cms_data: Path) -> dict[str, Any]:
    """Train the GAN on the real Z -> mu mu file with one process and with ``--nproc 2``."""
    folder = tmp_path_factory.mktemp("zmumu")
    config = write_config(folder, cms_data / ZMUMU, "gan")
    single = start_run(load_config(config), runs_dir=folder / "one", name="gan").run()
    launched = cli("train", config, "--run-dir", folder / "two", "--name", "gan", "--nproc", "2", cwd=folder)
    return {"folder": folder, "config": config, "one": single.run, "two": launched, "two_run": RunDirectory(folder / "two" / "gan")}


def test_two_ranks_match_one_process_cms_file(zmumu_runs: dict[str, Any]) -> None:
    done = zmumu_runs["two"]

    assert done.returncode == 0, done.stderr
    assert "finished 3 epochs" in done.stdout
    assert done.stderr == ""
    assert_same_models(zmumu_runs["one"], zmumu_runs["two_run"])
    assert_same_metrics(zmumu_runs["one"], zmumu_runs["two_run"])


def test_two_ranks_write_one_set_of_files(zmumu_runs: dict[str, Any]) -> None:
    runs_dir = zmumu_runs["folder"] / "two"
    run = zmumu_runs["two_run"]

    assert [path.name for path in runs_dir.iterdir()] == ["gan"]
    assert sorted(path.name for path in run.path.iterdir()) == sorted(
        ["checkpoints", "config.toml", "data.npz", "metrics.jsonl", "preprocessing.json", "status.json"]
    )
    assert sorted(path.name for path in run.checkpoints_dir.iterdir()) == ["best.pt", "last.pt"]
    steps = [row["step"] for row in run.metrics()]
    assert len(steps) == len(set(steps))
    status = run.status()
    assert status["state"] == "finished"
    assert status["world_size"] == 2
    assert status["step"] == zmumu_runs["one"].status()["step"]
    assert "world_size" not in zmumu_runs["one"].status()
    # The launcher prints rank 0's progress once, not once per rank.
    assert zmumu_runs["two"].stdout.count("run directory:") == 1


def test_runs_lists_rank_count(zmumu_runs: dict[str, Any]) -> None:
    from cmsgen.tui.commands.runs import run_rows
    from cmsgen.tui.widgets.metrics_tail import model_label

    (row,) = run_rows(zmumu_runs["folder"] / "two")
    assert row["world_size"] == 2
    assert model_label(row) == "gan x2"
    (single,) = run_rows(zmumu_runs["folder"] / "one")
    assert model_label(single) == "gan"


@pytest.mark.parametrize("model", ["vae", "flow", "gan-mmd", "vae-mmd"])
def test_two_ranks_match_one_process_sample(tmp_path: Path, model: str) -> None:
    write_sample(tmp_path / "sample", n_events=600, seed=5, layouts=("nanoaod",), n_files=1)
    config = write_config(tmp_path, tmp_path / "sample" / "nanoaod", model, epochs=2)
    single = start_run(load_config(config), runs_dir=tmp_path / "one", name=model).run()

    outcome = launch_two_ranks(train_request(config, tmp_path / "two", model))

    assert outcome.outcomes == {0: {"exit_code": 0}, 1: {"exit_code": 0}}
    two_ranks = RunDirectory(tmp_path / "two" / model)
    assert two_ranks.status()["state"] == "finished"
    assert_same_models(single.run, two_ranks)
    assert_same_metrics(single.run, two_ranks)


# ---------------------------------------------------------------------- stop and resume


@pytest.fixture(scope="module")
def stopped_two_rank_run(zmumu_runs: dict[str, Any]) -> RunDirectory:
    """Stop a two-rank copy of the ``zmumu_runs`` config inside its first epoch."""
    folder = zmumu_runs["folder"]
    outcome = distributed.launch_local(2, stop_after_step, zmumu_runs["config"], folder / "parts", "gan", 2)
    assert outcome.failure is None, outcome.failure
    # Rank 0 requests the stop after step 2 is logged, and the ranks agree on it at step 3.
    assert outcome.outcomes[0] == {"exit_code": 0, "state": "stopped", "step": 3}
    assert outcome.outcomes[1] == {"exit_code": 0, "state": "stopped", "step": 3}
    return RunDirectory(folder / "parts" / "gan")


def test_stopped_two_rank_run_keeps_checkpoint(stopped_two_rank_run: RunDirectory) -> None:
    run = stopped_two_rank_run

    status = run.status()
    assert status["state"] == "stopped"
    assert status["step"] == 3
    state = torch.load(run.checkpoint_path("last"), weights_only=True)
    assert state["step"] == 3
    assert state["batch_in_epoch"] == 3
    assert not any(name.startswith("module.") for name in state["model"])


def test_resume_two_ranks_equals_uninterrupted(
    zmumu_runs: dict[str, Any], stopped_two_rank_run: RunDirectory, tmp_path: Path
) -> None:
    parts = RunDirectory(shutil.copytree(stopped_two_rank_run.path, tmp_path / "gan"))

    outcome = launch_two_ranks(train_request(None, tmp_path, None, resume=str(parts.path)))

    assert outcome.outcomes[0] == {"exit_code": 0}
    whole = zmumu_runs["two_run"]
    assert parts.status()["state"] == "finished"
    assert parts.status()["step"] == whole.status()["step"]
    whole_rows, parts_rows = whole.metrics(), parts.metrics()
    assert [row["step"] for row in parts_rows] == [row["step"] for row in whole_rows]
    for expected, actual in zip(whole_rows, parts_rows, strict=True):
        assert {k: v for k, v in actual.items() if k not in TIMING_KEYS} == {
            k: v for k, v in expected.items() if k not in TIMING_KEYS
        }
    whole_state, parts_state = model_state(whole), model_state(parts)
    for name, tensor in whole_state.items():
        assert torch.equal(parts_state[name], tensor), name


def test_resume_two_rank_run_in_one_process(
    zmumu_runs: dict[str, Any], stopped_two_rank_run: RunDirectory, tmp_path: Path
) -> None:
    parts = RunDirectory(shutil.copytree(stopped_two_rank_run.path, tmp_path / "gan"))

    result = resume_run(parts.path).run()

    assert result.state == "finished"
    assert_same_models(zmumu_runs["two_run"], parts)
    assert_same_metrics(zmumu_runs["two_run"], parts)


def test_sigterm_to_launcher_stops_all_ranks(tmp_path: Path, cms_data: Path) -> None:
    config = write_config(tmp_path, cms_data / ZMUMU, "gan", epochs=500, log_every=1)
    run = RunDirectory(tmp_path / "runs" / "long")
    with train_process(config, tmp_path, "--run-dir", "runs", "--name", "long", "--nproc", "2") as process:
        wait_for_metrics(process, run, 2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=WAIT_SECONDS)

    assert process.returncode == 130, stderr
    assert stderr == ""
    assert stdout.count("stopped at step") == 1
    status = run.status()
    assert status["state"] == "stopped"
    assert "SIGTERM" in status["message"]
    state = torch.load(run.checkpoint_path("last"), weights_only=True)
    assert state["step"] == status["step"]
    assert state["step"] < status["total_steps"]
    steps = [row["step"] for row in run.metrics()]
    assert len(steps) == len(set(steps))


def test_nan_loss_on_one_rank_fails_run(tmp_path: Path, cms_data: Path) -> None:
    config = write_config(tmp_path, cms_data / ZMUMU, "gan", epochs=3)

    outcome = distributed.launch_local(2, nan_loss_on_rank_one, config, tmp_path / "runs", "nan", 8)

    assert outcome.failure is None, outcome.failure
    # Rank 0's own loss is finite, but the mean over the ranks is not, so both ranks stop at step 8.
    for rank in (0, 1):
        assert outcome.outcomes[rank]["exit_code"] == 6
        assert "loss = nan at step 8" in outcome.outcomes[rank]["failed"]
    run = RunDirectory(tmp_path / "runs" / "nan")
    status = run.status()
    assert status["state"] == "failed"
    assert "step 8" in status["message"]
    assert torch.load(run.checkpoint_path("last"), weights_only=True)["step"] == 6  # the end of epoch 1
    assert [row["step"] for row in run.metrics()][-1] == 6


def test_killed_rank_fails_run_with_message(tmp_path: Path, cms_data: Path) -> None:
    config = write_config(tmp_path, cms_data / ZMUMU, "gan", epochs=500, log_every=1)
    log_file = Path(os.environ["CMSGEN_LOG_DIR"]) / "cmsgen.log"
    run = RunDirectory(tmp_path / "runs" / "kill")
    with train_process(config, tmp_path, "--run-dir", "runs", "--name", "kill", "--nproc", "2") as process:
        wait_for_metrics(process, run, 2)
        # Each rank logs its process id when it joins the process group.
        joined = [line for line in log_file.read_text().splitlines() if "rank 1 of 2 joined the process group" in line]
        assert len(joined) == 1
        rank_one_pid = int(joined[0].split("[pid ")[1].split("]")[0])

        os.kill(rank_one_pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=WAIT_SECONDS)

    assert process.returncode == 6, stderr
    assert stderr.startswith("Error: rank 1 of 2 crashed or was killed, so training stopped")
    assert "Traceback" not in stderr
    assert run.status()["state"] == "failed"
    assert run.checkpoint_path("last").is_file()


# ---------------------------------------------------------------------- errors and set-up


def test_batch_not_divisible_exit_5(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "events.root", "gan", batch_size=64)

    done = cli("train", config, "--run-dir", "runs", "--nproc", "3", cwd=tmp_path)

    assert done.returncode == 5
    assert done.stderr.strip() == "Error: training.batch_size = 64 is invalid for 3 ranks: expected a multiple of 3, such as 63 or 66"
    assert not (tmp_path / "runs").exists()


def test_nproc_under_torchrun_rejected(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "events.root", "gan")
    environment = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}

    done = subprocess.run(
        [sys.executable, "-m", "cmsgen.tui", "train", str(config), "--nproc", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        env=environment,
    )

    assert done.returncode == 5
    assert "--nproc is invalid under torchrun" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_global_batch() -> None:
    distributed.check_global_batch(64, 2)
    distributed.check_global_batch(7, 1)
    with pytest.raises(ConfigError, match="expected a multiple of 4, such as 4$"):
        distributed.check_global_batch(2, 4)


def test_no_launcher_environment_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in distributed.ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    assert distributed.init_from_environment() is None
    assert not torch.distributed.is_initialized()

