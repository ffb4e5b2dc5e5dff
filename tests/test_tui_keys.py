"""Pilot tests of the keys the app shows: header tabs, footer, help screen and command palette."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.table import Table
from test_tui_runs import make_run, run_async, wait_for
from textual.widgets import Static

from cmsgen.engine.sample import write_sample
from cmsgen.tui.app import SCREEN_KEYS, CmsgenApp
from cmsgen.tui.screens.files import FilesScreen
from cmsgen.tui.screens.help import WIDGET_KEYS, HelpScreen, binding_rows


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a small synthetic NanoAOD sample, so that every screen opens on data without the shared files."""
    directory = tmp_path_factory.mktemp("sample")
    write_sample(directory, n_events=500, seed=1, layouts=("nanoaod",), n_files=1)
    return directory / "nanoaod"


def footer_keys(app: CmsgenApp) -> dict[str, str]:
    """Return key -> description of the bindings that the footer of the shown screen displays."""
    return {
        app.get_key_display(active.binding): active.binding.description
        for active in app.screen.active_bindings.values()
        if active.binding.show and active.enabled
    }


@pytest.mark.parametrize("mode", list(SCREEN_KEYS))
@run_async
async def test_header_lists_every_screen(sample_dir: Path, tmp_path: Path, mode: str) -> None:
    app = CmsgenApp([sample_dir], tmp_path / "runs", initial_mode=mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        title = app.format_title(app.screen.title or app.title, "").plain

        for key, name in SCREEN_KEYS.values():
            assert f"{key} {name}" in title
        assert len(title) <= 70


@pytest.mark.parametrize("mode", list(SCREEN_KEYS))
@run_async
async def test_footer_shows_help_and_quit(sample_dir: Path, tmp_path: Path, mode: str) -> None:
    app = CmsgenApp([sample_dir], tmp_path / "runs", initial_mode=mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        keys = footer_keys(app)

        assert keys.get("?") == "Help"
        assert keys.get("q") == "Quit"
        assert "1" not in keys


@run_async
async def test_runs_footer_shows_attach(sample_dir: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, "gan-finished", "finished", 40)
    app = CmsgenApp([sample_dir], runs_dir, initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.screen.listed)

        assert footer_keys(app).get("⏎") == "Attach"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.current_mode == "train")
        assert app.current_run == runs_dir / "gan-finished"


@run_async
async def test_help_lists_widget_keys(sample_dir: Path, tmp_path: Path) -> None:
    app = CmsgenApp([sample_dir], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        rows = binding_rows(list(FilesScreen.BINDINGS), app.get_key_display) + WIDGET_KEYS["Files"]
        everywhere = binding_rows(list(CmsgenApp.BINDINGS), app.get_key_display)

        assert ("/", "Filter") in rows
        assert ("j / k", "Move down / up in the tree") in rows
        assert ("?", "Help") in everywhere
        tables = [static.content for static in app.screen.query(Static) if isinstance(static.content, Table)]
        assert [table.title for table in tables[:2]] == ["Everywhere", "Files"]
        assert len(tables) == 1 + len(SCREEN_KEYS)


@run_async
async def test_palette_lists_screens_and_actions(sample_dir: Path, tmp_path: Path) -> None:
    app = CmsgenApp([sample_dir], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [command.title for command in app.get_system_commands(app.screen)]

        for _, name in SCREEN_KEYS.values():
            assert f"Go to {name}" in titles
        assert "Train: Stop" in titles
        assert "Train: Smooth" in titles


@run_async
async def test_runs_vim_keys_move_cursor(sample_dir: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, "a-run", "finished", 20)
    make_run(runs_dir, "b-run", "finished", 20)
    app = CmsgenApp([sample_dir], runs_dir, initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.screen.listed)
        await pilot.press("j")
        assert app.screen.selected_run() == runs_dir / "b-run"
        await pilot.press("k")
        assert app.screen.selected_run() == runs_dir / "a-run"


@run_async
async def test_palette_shows_keys_as_footer(sample_dir: Path, tmp_path: Path) -> None:
    app = CmsgenApp([sample_dir], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        helps = {command.title: command.help for command in app.get_system_commands(app.screen)}

        assert helps["Files: Filter"] == "key /"
