"""Pilot tests of the Runs screen and of attaching the live panels to a run directory.

The run directories here are written by the test in the run-directory format
(``status.json``, ``metrics.jsonl``), the way a headless trainer writes them,
so attaching works on runs that the app did not start.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from textual.widgets import DataTable

from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.screens.runs import RunsScreen
from cmsgen.tui.screens.train import TrainScreen
from cmsgen.tui.widgets.loss_panel import LossPanel
from cmsgen.tui.widgets.run_monitor import RunMonitor

FIXED_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()


def write_status(run_dir: Path, state: str, step: int, total_steps: int = 200, pid: int | None = None) -> None:
    """Write a ``status.json`` in the run-directory format."""
    status = {
        "state": state, "pid": os.getpid() if pid is None else pid, "name": run_dir.name, "model": "gan",
        "feature_set": "dimuon", "step": step, "total_steps": total_steps, "epoch": step // 20,
        "total_epochs": total_steps // 20, "progress": step / total_steps, "message": "",
        "best_metric": 0.5, "best_step": 20, "started": FIXED_TIME, "updated": FIXED_TIME,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "status.json.tmp"
    tmp.write_text(json.dumps(status))
    os.replace(tmp, run_dir / "status.json")


def append_metrics(run_dir: Path, steps: range) -> None:
    """Append one metrics row per step, with the physics metric every 20 steps."""
    with (run_dir / "metrics.jsonl").open("a") as stream:
        for step in steps:
            row = {
                "step": step, "epoch": step // 20, "time": 1767225600.0 + step,
                "loss_critic": -1.0 / (1 + step), "loss_generator": 0.5 + 0.01 * (step % 7),
                "lr": 1e-3, "events_per_second": 5000.0, "grad_norm": 1.0,
            }
            if step % 20 == 0:
                row["w1_mass"] = 2.0 / (1 + step / 20)
                row["best_w1_mass"] = row["w1_mass"]
            stream.write(json.dumps(row) + "\n")


def make_run(runs_dir: Path, name: str, state: str, n_steps: int, pid: int | None = None) -> Path:
    """Write a run directory with its status and ``n_steps`` metrics rows, and return its path."""
    run_dir = runs_dir / name
    write_status(run_dir, state, n_steps, pid=pid)
    append_metrics(run_dir, range(1, n_steps + 1))
    return run_dir


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test with ``asyncio.run`` (the project has no pytest asyncio plugin)."""

    @functools.wraps(test)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def wait_for(pilot, condition, tries: int = 200, delay: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Return whether ``condition()`` became true within ``tries`` pauses of ``delay`` seconds."""
    for _ in range(tries):
        if condition():
            return True
        await pilot.pause(delay)
    return condition()


@run_async
async def test_runs_lists_every_run(tmp_path: Path) -> None:
    make_run(tmp_path, "a-finished", "finished", 200)
    make_run(tmp_path, "b-running", "running", 40)
    make_run(tmp_path, "c-crashed", "running", 10, pid=2**22 + 12345)
    app = CmsgenApp([tmp_path], tmp_path, initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert await wait_for(pilot, lambda: screen.listed)
        table = screen.query_one(DataTable)
        assert table.row_count == 3
        states = [str(table.get_row_at(index)[1]) for index in range(3)]
        assert "finished" in states[0]
        assert "running" in states[1]
        assert "crashed" in states[2]
        # Every run name fits its column, including in the first frame drawn after the listing.
        await pilot.pause()
        screenshot = app.export_screenshot()
        assert "a-finished" in screenshot
        assert "c-crashed" in screenshot


@run_async
async def test_attach_fills_panels_live(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "headless-run", "running", 60)
    app = CmsgenApp([tmp_path], tmp_path, initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.listed)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        monitor = app.screen.query_one(RunMonitor)
        assert monitor.run_dir == run_dir
        assert await wait_for(pilot, lambda: monitor.rows_received == 60)

        append_metrics(run_dir, range(61, 101))
        write_status(run_dir, "running", 100)
        assert await wait_for(pilot, lambda: monitor.rows_received == 100)
        assert monitor.status is not None
        assert monitor.status["step"] == 100

        loss_panel = monitor.query_one("#loss-panel", LossPanel)
        assert loss_panel.plotted_names() == ["loss_critic", "loss_generator"]
        metric_panel = monitor.query_one("#metric-panel", LossPanel)
        assert metric_panel.best_point() == (100.0, 2.0 / 6)
        text = loss_panel.render_text(50, 12).plain
        assert "Losses" in text


@run_async
async def test_attach_reports_state_change(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "stopping", "running", 20)
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        monitor = app.screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: monitor.rows_received == 20)
        write_status(run_dir, "stopped", 20)
        assert await wait_for(pilot, lambda: (monitor.status or {}).get("state") == "stopped")


@run_async
async def test_smoothing_and_log_keys(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "keys", "finished", 100)
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        monitor = app.screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: monitor.rows_received == 100)
        await pilot.press("m")
        await pilot.press("y")
        panel = monitor.query_one("#loss-panel", LossPanel)
        assert panel.smooth
        assert panel.logy
        assert "(smoothed, log y)" in panel.render_text(50, 12).plain


def test_attach_takes_run_name_or_path(tmp_path: Path) -> None:
    from cmsgen.engine.errors import DataNotFoundError
    from cmsgen.tui.commands.app import resolve_attached_run

    run_dir = make_run(tmp_path, "named", "running", 5)

    assert resolve_attached_run(Path("named"), tmp_path) == tmp_path / "named"
    assert resolve_attached_run(run_dir, tmp_path / "elsewhere") == run_dir
    with pytest.raises(DataNotFoundError, match="run missing not found"):
        resolve_attached_run(Path("missing"), tmp_path)
