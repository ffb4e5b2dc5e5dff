"""Unit tests of the TUI building blocks that need no running app: tailing, history, thinning, status text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cmsgen.tui.widgets.loss_panel import MetricHistory, format_duration, moving_average, prepare_series, thin
from cmsgen.tui.widgets.metrics_tail import MetricsTail, find_run_dirs, read_status
from cmsgen.tui.widgets.run_monitor import describe_status, estimate_remaining_seconds


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
    line = describe_status(status, {"events_per_second": 1234.0})
    assert "gan-test" in line
    assert "1,234 ev/s" in line
    assert "best w1_mass 0.25 @ 40" in line
    assert format_duration(3725) == "1h02m"
    assert format_duration(None) == "-"
