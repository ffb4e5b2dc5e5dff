"""Pilot tests of the Files screen on real CMS files: tree navigation, filter, histograms, unreadable branches."""

from __future__ import annotations

from pathlib import Path

from test_tui_runs import run_async, wait_for

from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.screens.files import FilesScreen
from cmsgen.tui.widgets.dataset_tree import DatasetTree
from cmsgen.tui.widgets.plot_view import PlotView


def cursor_label(tree: DatasetTree) -> str:
    node = tree.cursor_node
    return str(node.label) if node is not None else ""


@run_async
async def test_files_tree_and_histogram(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, FilesScreen)
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        tree = screen.query_one(DatasetTree)

        # dataset -> file -> tree "events" -> Type, Run, Event, E1, px1
        for _ in range(7):
            await pilot.press("j")
        assert cursor_label(tree).startswith("px1")
        assert await wait_for(pilot, lambda: any(key[2] == "px1" for key in screen.histograms), tries=400)
        plot = screen.query_one("#files-plot", PlotView)
        assert plot.renderer is not None
        histogram = next(value for key, value in screen.histograms.items() if key[2] == "px1")
        assert histogram.total > 2000

        await pilot.press("k")
        assert cursor_label(tree).startswith("E1")
        await pilot.press("h")
        assert cursor_label(tree).startswith("events")
        await pilot.press("h")
        assert not tree.cursor_node.is_expanded  # type: ignore[union-attr]
        await pilot.press("l")
        assert tree.cursor_node.is_expanded  # type: ignore[union-attr]


@run_async
async def test_files_filter_keeps_matches(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        await pilot.press("slash")
        await pilot.press(*"eta")
        tree = screen.query_one(DatasetTree)
        names = []
        for line in range(tree.last_line + 1):
            node = tree.get_node_at_line(line)
            if node is not None and node.data is not None and node.data.kind == "branch":
                names.append(node.data.branch)
        assert names == ["eta1", "eta2"]


@run_async
async def test_files_unreadable_branch_message(legacy_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([legacy_data / "uproot-mc10events.root"], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded, tries=600)
        tree = screen.query_one(DatasetTree)
        target = None
        for line in range(tree.last_line + 1):
            node = tree.get_node_at_line(line)
            if node is not None and node.data is not None and node.data.branch == "Info":
                target = node
        assert target is not None
        tree.move_cursor(target)
        plot = screen.query_one("#files-plot", PlotView)
        assert await wait_for(pilot, lambda: "cannot be read" in plot.message)
        assert plot.renderer is None
