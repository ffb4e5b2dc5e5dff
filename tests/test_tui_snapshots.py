"""Snapshot tests of each screen at 80x24, on fixed data with relative paths and no clock times.

Update the stored snapshots after an intended change with
``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_runs import make_run, wait_for
from textual.widgets import Input

from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.widgets.run_monitor import RunMonitor

SIZE = (80, 24)


@pytest.fixture
def in_shared_data(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the shared data folder, so that paths on screen are relative and the same on every machine."""
    monkeypatch.chdir(shared_data)
    return shared_data


def test_snapshot_files(snap_compare, in_shared_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = CmsgenApp([Path("cms/uproot-Zmumu.root")], tmp_path / "runs")

    async def open_branch(pilot) -> None:  # type: ignore[no-untyped-def]
        assert await wait_for(pilot, lambda: app.screen.loaded, tries=400)
        # dataset, file, tree "events", then Type Run Event E1 px1 py1 pz1 pt1
        for _ in range(10):
            await pilot.press("j")
        assert await wait_for(pilot, lambda: any(key[2] == "pt1" for key in app.screen.histograms), tries=400)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=open_branch)


def test_snapshot_report(snap_compare, in_shared_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = CmsgenApp([Path("cms/uproot-Zmumu.root")], tmp_path / "runs", initial_mode="report")

    async def built(pilot) -> None:  # type: ignore[no-untyped-def]
        assert await wait_for(pilot, lambda: getattr(app.screen, "report", None) is not None, tries=600)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=built)


def test_snapshot_runs(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    make_run(Path("runs"), "gan-finished", "finished", 200)
    make_run(Path("runs"), "vae-stopped", "stopped", 80)
    app = CmsgenApp([Path("runs")], Path("runs"), initial_mode="runs")

    async def listed(pilot) -> None:  # type: ignore[no-untyped-def]
        assert await wait_for(pilot, lambda: app.screen.listed)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=listed)


def test_snapshot_train_attached(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    run_dir = make_run(Path("runs"), "gan-finished", "finished", 200)
    app = CmsgenApp([Path("data.root")], Path("runs"), attach_run=run_dir)

    async def filled(pilot) -> None:  # type: ignore[no-untyped-def]
        monitor = app.screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: monitor.rows_received == 200)
        data = app.screen.query_one("#train-data", Input)
        # The form shows the sample config's data as an absolute path, which differs between checkouts.
        assert await wait_for(pilot, lambda: data.value.endswith(".root"))
        data.value = "cms/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
        app.clear_notifications()
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=filled)


def test_snapshot_validate_empty(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    app = CmsgenApp([Path("data.root")], Path("runs"), initial_mode="validate")
    assert snap_compare(app, terminal_size=SIZE)


def test_snapshot_help(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    app = CmsgenApp([Path("data.root")], Path("runs"), initial_mode="runs")
    assert snap_compare(app, terminal_size=SIZE, press=["question_mark"])
