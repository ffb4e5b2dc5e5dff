"""Pilot tests on a run trained headless before the app opened: attach to it, validate it, see the plots."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_tui_runs import run_async, wait_for
from textual.widgets import DataTable, Select, Static

from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.screens.validate import ValidateScreen
from cmsgen.tui.widgets.plot_view import PlotView
from cmsgen.tui.widgets.run_monitor import RunMonitor

REPO_ROOT = Path(__file__).resolve().parents[1]
GAN_CONFIG = REPO_ROOT / "sample_configs" / "gan_zmumu_2010.toml"


@pytest.fixture(scope="module")
def headless_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Train a two-epoch GAN with the headless ``train`` command and return its run directory."""
    runs_dir = tmp_path_factory.mktemp("runs")
    command = [sys.executable, "-m", "cmsgen.tui", "train", str(GAN_CONFIG), "--epochs", "2", "--run-dir", str(runs_dir), "--name", "headless"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return runs_dir / "headless"


@run_async
async def test_attach_to_headless_run(headless_run: Path) -> None:
    app = CmsgenApp([], headless_run.parent, initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.listed)
        await pilot.press("enter")
        monitor = app.screen.query_one(RunMonitor)
        n_rows = len((headless_run / "metrics.jsonl").read_text().splitlines())
        assert await wait_for(pilot, lambda: monitor.rows_received == n_rows)
        assert monitor.status is not None
        assert monitor.status["state"] == "finished"


@run_async
async def test_validate_shows_figures_and_plot(headless_run: Path) -> None:
    app = CmsgenApp([], headless_run.parent, initial_mode="validate")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, ValidateScreen)
        assert screen.query_one("#validate-run", Select).value == str(headless_run)
        await pilot.press("s")
        assert await wait_for(pilot, lambda: screen.report is not None, tries=2400)
        table = screen.query_one(DataTable)
        assert table.row_count > 10
        marks = {str(table.get_row_at(index)[0]) for index in range(table.row_count)}
        assert any("pass" in mark or "warn" in mark or "fail" in mark for mark in marks)
        plot = screen.query_one("#validate-plot", PlotView)
        assert plot.renderer is not None
        assert "━ real  ━ generated" in plot.render().plain
        assert "could not be drawn" not in plot.render().plain
        assert (headless_run / "validation.json").is_file()

        table.focus()
        await pilot.press("down")
        assert plot.renderer is not None


@run_async
async def test_validate_loads_saved_report_and_clears(headless_run: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    shutil.copytree(headless_run, runs_dir / "a-validated")
    shutil.copytree(headless_run, runs_dir / "b-not-validated")
    (runs_dir / "b-not-validated" / "validation.json").unlink(missing_ok=True)
    command = [sys.executable, "-m", "cmsgen.tui", "validate", "a-validated", "--run-dir", str(runs_dir), "--events", "500"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    app = CmsgenApp([], runs_dir, initial_mode="validate")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        select = screen.query_one("#validate-run", Select)
        table = screen.query_one(DataTable)
        select.value = str(runs_dir / "a-validated")
        assert await wait_for(pilot, lambda: screen.shown_run == runs_dir / "a-validated")
        assert table.row_count > 10
        assert "baseline" in str(screen.query_one("#validate-row", Static).render())
        # The GAN sample config's test split is below the small-sample size of the report.
        assert "1 warning" in str(screen.query_one("#validate-step", Static).render())
        assert any(n.title == "Validation warning" for n in app._notifications)

        select.value = str(runs_dir / "b-not-validated")
        assert await wait_for(pilot, lambda: table.row_count == 0)
        assert screen.report is None
        assert "not validated yet" in str(screen.query_one("#validate-step", Static).render())
        assert screen.query_one("#validate-plot", PlotView).renderer is None


@run_async
async def test_validate_fits_80_columns(headless_run: Path) -> None:
    app = CmsgenApp([], headless_run.parent, initial_mode="validate")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("s")
        assert await wait_for(pilot, lambda: screen.report is not None, tries=2400)
        table = screen.query_one(DataTable)
        total_width = sum(column.get_render_width(table) for column in table.columns.values())
        plot = screen.query_one("#validate-plot", PlotView)

        assert total_width <= 78
        assert plot.content_size.height >= 10
        await pilot.press("p")
        assert screen.maximized is plot
        await pilot.press("p")
        assert screen.maximized is None


@run_async
async def test_validate_reload_keeps_selection(headless_run: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    shutil.copytree(headless_run, runs_dir / "a-run")
    shutil.copytree(headless_run, runs_dir / "b-run")
    failed = runs_dir / "c-failed-at-set-up"
    failed.mkdir()
    shutil.copy(headless_run / "status.json", failed / "status.json")
    app = CmsgenApp([], runs_dir, initial_mode="validate")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        select = screen.query_one("#validate-run", Select)
        select.value = str(runs_dir / "a-run")
        await pilot.pause()
        await pilot.press("ctrl+r")
        await pilot.pause()

        assert select.value == str(runs_dir / "a-run")
        assert screen.run_count == 2
