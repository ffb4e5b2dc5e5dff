"""Unit tests of the TUI building blocks that need no running app: tailing, history, thinning, status text."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pytest

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.logs import log_path
from cmsgen.tui.screens.train import process_output, read_config_data, run_name_stem
from cmsgen.tui.widgets.loss_panel import MetricHistory, format_duration, moving_average, prepare_series, smoothing_window, thin
from cmsgen.tui.widgets.metrics_tail import MetricsTail, find_run_dirs, read_status
from cmsgen.tui.widgets.run_monitor import (
    PROCESS_LOG,
    crash_message,
    describe_status,
    estimate_remaining_seconds,
    message_for_app,
    read_model_settings,
    recent_events_per_second,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_tail_reads_only_appended_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read_new() == []

    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    rows = tail.read_new()
    assert [row["step"] for row in rows] == [1, 2]
    assert tail.read_new() == []

    with path.open("a") as stream:
        stream.write('{"step": 3, "loss": 1.0}\n')
    assert [row["step"] for row in tail.read_new()] == [3]


def test_tail_keeps_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": ')
    tail = MetricsTail(path)
    assert [row["step"] for row in tail.read_new()] == [1]

    with path.open("a") as stream:
        stream.write('2}\n')
    assert [row["step"] for row in tail.read_new()] == [2]


def test_tail_restarts_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n')
    tail = MetricsTail(path)
    tail.read_new()
    path.write_text('{"step": 9}\n')
    assert [row["step"] for row in tail.read_new()] == [9]


def test_tail_skips_invalid_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    tail = MetricsTail(path)
    assert [row["step"] for row in tail.read_new()] == [1, 2]
    assert tail.invalid_lines == 1


def test_tail_reads_long_file_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": step, "loss": 1.0}) + "\n" for step in range(1000)))
    tail = MetricsTail(path)
    steps: list[int] = []
    while not tail.at_end:
        steps.extend(row["step"] for row in tail.read_new(max_bytes=1000))
    assert steps == list(range(1000))


def test_read_status_missing_and_invalid(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    (tmp_path / "status.json").write_text("{broken")
    assert read_status(tmp_path) is None
    (tmp_path / "status.json").write_text('{"state": "running"}')
    assert read_status(tmp_path) == {"state": "running"}


def test_find_run_dirs_needs_status(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "status.json").write_text("{}")
    (tmp_path / "b").mkdir()
    assert find_run_dirs(tmp_path) == [tmp_path / "a"]
    assert find_run_dirs(tmp_path / "missing") == []


def test_history_separates_losses() -> None:
    history = MetricHistory()
    added = history.add_rows(
        [
            {"step": 1, "epoch": 0, "time": 1.0, "loss_critic": -1.0, "loss_generator": 0.5, "lr": 1e-3},
            {"step": 2, "epoch": 0, "time": 2.0, "loss_critic": -0.5, "loss_generator": 0.4, "w1_mass": 3.0},
            {"epoch": 0},
        ]
    )
    assert added == 2
    assert history.loss_names() == ["loss_critic", "loss_generator"]
    steps, values = history.series("w1_mass")
    assert steps.tolist() == [2.0]
    assert values.tolist() == [3.0]


def test_history_rewinds_on_rewritten_file() -> None:
    history = MetricHistory()
    history.add_rows({"step": step, "loss": float(step)} for step in range(1, 11))
    # A resumed run rewrote the file up to its checkpoint at step 6; the tail reads it again from the start.
    history.add_rows({"step": step, "loss": float(step)} for step in range(1, 7))
    history.add_rows([{"step": 7, "loss": 70.0}])

    steps, values = history.series("loss")
    assert steps.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert values[-1] == 70.0
    assert len(history) == 7


def test_history_keeps_rows_of_same_step() -> None:
    history = MetricHistory()
    history.add_rows([{"step": 30, "loss": 1.0}, {"step": 30, "w1_mass": 2.5}, {"step": 31, "loss": 0.9}])

    assert history.series("loss")[0].tolist() == [30.0, 31.0]
    assert history.series("w1_mass")[0].tolist() == [30.0]


def test_thin_bounds_points() -> None:
    steps = np.arange(100_000, dtype=float)
    values = np.sin(steps / 1000)
    thinned_steps, thinned_values = thin(steps, values, 160)
    assert thinned_steps.size == 160
    assert thinned_values.size == 160
    assert thinned_steps[0] < thinned_steps[-1]
    assert abs(thinned_values.mean() - values.mean()) < 1e-2


def test_moving_average_matches_convolution() -> None:
    values = np.random.default_rng(0).normal(size=500)
    window = 7
    expected = np.convolve(values, np.ones(window) / window, mode="valid")
    assert np.allclose(moving_average(values, window)[window - 1 :], expected)


def test_prepare_series_drops_nonfinite() -> None:
    history = MetricHistory()
    history.add_rows([{"step": 1, "loss": 1.0}, {"step": 2, "loss": float("nan")}, {"step": 3, "loss": 0.5}])
    prepared = prepare_series(history, ["loss"], smooth=False, max_points=100)
    assert prepared["loss"][0].tolist() == [1.0, 3.0]


def test_status_line_and_eta() -> None:
    status = {
        "name": "gan-test", "model": "gan", "feature_set": "dimuon", "state": "running", "step": 50,
        "total_steps": 100, "epoch": 1, "total_epochs": 2, "progress": 0.5,
        "started": "2026-01-01T00:00:00+00:00", "best_metric": 0.25, "best_step": 40,
    }
    start = 1767225600.0  # 2026-01-01T00:00:00Z
    assert estimate_remaining_seconds(status, now=start + 60) == 60.0
    line = describe_status(status, 1234.0)
    assert "gan-test" in line
    assert "1,234 ev/s" in line
    assert "best w1_mass 0.25 @ 40" in line
    assert format_duration(3725) == "1h02m"
    assert format_duration(None) == "-"


def rate_rows(rates_by_step: list[tuple[int, float]], epoch_end_steps: Collection[int] = ()) -> list[dict]:
    """Return metrics rows with the given events_per_second, and w1_mass on the epoch-end steps."""
    rows = []
    for step, rate in rates_by_step:
        row = {"step": step, "epoch": 0, "loss": 1.0, "events_per_second": rate}
        if step in epoch_end_steps:
            row["w1_mass"] = 1.0
        rows.append(row)
    return rows


def test_rate_ignores_short_interval_outlier() -> None:
    history = MetricHistory()
    # Intervals of 20 steps at 500 ev/s, and a 1-step interval after an epoch's end timed at 100,000 ev/s.
    history.add_rows(rate_rows([(20, 500.0), (40, 500.0), (41, 100_000.0), (60, 500.0), (80, 500.0)]))
    rate = recent_events_per_second(history)
    assert rate is not None
    assert 500.0 <= rate < 530.0


def test_rate_keeps_last_short_epoch_line_small() -> None:
    history = MetricHistory()
    # The run trained at 400-650 ev/s, and its last line covers the 2 steps before the epoch's end.
    rows = [(step, 400.0 + 25 * (index % 10)) for index, step in enumerate(range(20, 420, 20))]
    history.add_rows(rate_rows([*rows, (402, 4093.0)], epoch_end_steps={402}))
    rate = recent_events_per_second(history)
    assert rate is not None
    assert 400.0 <= rate <= 650.0


def test_rate_uses_latest_window() -> None:
    history = MetricHistory()
    history.add_rows(rate_rows([(step, 100.0) for step in range(10, 210, 10)]))
    history.add_rows(rate_rows([(step, 1000.0) for step in range(210, 310, 10)]))
    assert recent_events_per_second(history, window=10) == pytest.approx(1000.0)
    assert recent_events_per_second(history, window=20) == pytest.approx(2000 / 11)


def test_rate_none_without_rates() -> None:
    history = MetricHistory()
    assert recent_events_per_second(history) is None
    history.add_rows([{"step": 1, "loss": 1.0, "events_per_second": None}])
    assert recent_events_per_second(history) is None


def test_history_keeps_settings_out_of_losses() -> None:
    history = MetricHistory()
    history.add_rows([{"step": 20, "reconstruction": 8.2, "kl": 0.8, "beta": 0.04, "loss": 8.2, "grad_norm": 0.9}])
    assert "beta" in history.loss_names()
    version = history.version
    history.set_settings({"beta", "latent_dim", "kl_warmup_steps"})
    assert history.loss_names() == ["reconstruction", "kl", "loss"]
    assert history.setting_names() == ["beta"]
    assert history.version > version


def test_model_settings_from_run_config(tmp_path: Path) -> None:
    assert read_model_settings(tmp_path) is None
    (tmp_path / "config.toml").write_text('[model]\nfamily = "vae"\nbeta = 1.0\nkl_warmup_steps = 500\n')
    assert read_model_settings(tmp_path) == {"beta", "kl_warmup_steps"}
    (tmp_path / "config.toml").write_text("[model\n")
    assert read_model_settings(tmp_path) == frozenset()


def test_status_line_shows_settings_and_app_hint() -> None:
    status = {
        "name": "vae-run", "model": "vae", "feature_set": "dimuon", "state": "stopped", "step": 350,
        "total_steps": 1860, "epoch": 11, "total_epochs": 60,
        "message": "stopped at step 350 (received SIGTERM). Resume with --resume /runs/vae-run",
    }
    line = describe_status(status, 512.4, {"beta": 0.68})
    assert "512 ev/s" in line
    assert "beta 0.68" in line
    assert "Press r to resume." in line
    assert "--resume" not in line
    assert line.endswith("stopped at step 350 (received SIGTERM). Press r to resume.")


def test_app_message_keeps_other_states() -> None:
    assert message_for_app({"state": "failed", "message": "lr is too high"}) == "lr is too high"
    assert message_for_app({"state": "stopped"}) == "Press r to resume."


def test_crash_message_names_output_file(tmp_path: Path) -> None:
    assert str(log_path()) in crash_message(tmp_path)
    assert "output log" not in crash_message(tmp_path)
    (tmp_path / PROCESS_LOG).write_text("output\n")
    assert str(tmp_path / PROCESS_LOG) in crash_message(tmp_path)


def test_process_output_leaves_out_command(tmp_path: Path) -> None:
    path = tmp_path / PROCESS_LOG
    path.write_text(
        "\n$ python -m cmsgen.tui train a.toml\nfinished 2 epochs\n"
        "\n$ python -m cmsgen.tui train --resume run\nError: run already trained 2 epochs.\n"
    )
    assert process_output(path) == "Error: run already trained 2 epochs."
    assert process_output(tmp_path / "missing.log") == ""


def test_run_name_stem(tmp_path: Path) -> None:
    assert run_name_stem(Path("sample_configs/flow_doublemu_2012.toml")) == "flow_doublemu_2012"
    run_dir = tmp_path / "flow_doublemu_2012-20261205-010000-2"
    run_dir.mkdir()
    (run_dir / "status.json").write_text("{}")
    assert run_name_stem(run_dir / "config.toml") == "flow_doublemu_2012"


def test_config_data_from_sample_config() -> None:
    paths = read_config_data(REPO_ROOT / "sample_configs" / "flow_doublemu_2012.toml")
    assert len(paths) == 1
    assert paths[0].endswith("Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root")
    assert Path(paths[0]).is_absolute()


def test_config_data_rejects_invalid_config(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[model]\nfamily = 'vae'\n[data]\n")
    with pytest.raises(ConfigError, match="data.paths"):
        read_config_data(broken)


@pytest.mark.parametrize(("n_points", "window"), [(1, 1), (4, 2), (24, 5), (80, 5), (1_000, 20), (100_000, 2_000)])
def test_smoothing_window_sizes(n_points: int, window: int) -> None:
    assert smoothing_window(n_points) == window


def test_smoothing_changes_short_noisy_series() -> None:
    history = MetricHistory()
    rng = np.random.default_rng(0)
    history.add_rows([{"step": step, "loss": 1.0 + rng.normal(0.0, 0.3)} for step in range(24)])

    _, raw = prepare_series(history, ["loss"], smooth=False, max_points=100)["loss"]
    _, smoothed = prepare_series(history, ["loss"], smooth=True, max_points=100)["loss"]

    assert np.std(np.diff(smoothed)) < 0.5 * np.std(np.diff(raw))
