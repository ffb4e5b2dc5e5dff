"""Pilot tests of the Files screen on real CMS files: tree navigation, loading, filter, selection, histograms, unreadable branches."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from test_inspect import damage_first_basket
from test_tui_runs import run_async, wait_for
from textual.widgets import Input, Static
from textual.widgets.tree import TreeNode

from cmsgen.engine.sample import write_sample
from cmsgen.engine.sources.inspect import inspect_file
from cmsgen.engine.validation.histograms import histogram_1d
from cmsgen.tui import plots
from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.commands.demo import sample_datasets
from cmsgen.tui.screens.files import FilesScreen, describe_node, histogram_title
from cmsgen.tui.widgets.dataset_tree import DatasetTree, NodeInfo, plural
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


def find_node(tree: DatasetTree, predicate: Callable[[NodeInfo], bool]) -> TreeNode[NodeInfo] | None:
    """Return the first shown node whose data matches ``predicate``."""
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        if node is not None and node.data is not None and predicate(node.data):
            return node
    return None


@run_async
async def test_files_late_histogram_not_shown(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, FilesScreen)
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        tree = screen.query_one(DatasetTree)
        branch = find_node(tree, lambda info: info.branch == "px1")
        events = find_node(tree, lambda info: info.kind == "object")
        assert branch is not None
        assert events is not None

        # Both moves are handled before the histogram worker of px1 can post its result.
        tree.move_cursor(branch)
        tree.move_cursor(events)
        assert await wait_for(pilot, lambda: any(key[2] == "px1" for key in screen.histograms), tries=400)
        await pilot.pause()
        plot = screen.query_one("#files-plot", PlotView)
        assert screen.selected_key is None
        assert plot.renderer is None
        assert plot.message == "Select a branch to see its histogram."

        # Back on px1, the cached histogram is shown at once.
        tree.move_cursor(branch)
        assert await wait_for(pilot, lambda: plot.renderer is not None)


@run_async
async def test_files_number_keys_while_loading(legacy_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([legacy_data], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, FilesScreen)
        assert app.focused is screen.query_one(DatasetTree)
        assert not screen.loaded
        await pilot.press("4")
        assert app.current_mode == "runs"
        assert screen.query_one("#files-filter", Input).value == ""

        await pilot.press("1")
        assert app.current_mode == "files"
        assert await wait_for(pilot, lambda: screen.loaded, tries=600)
        assert screen.query_one("#files-filter", Input).value == ""
        assert screen.query_one(DatasetTree).file_count() == 4


@run_async
async def test_files_loading_status(legacy_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([legacy_data], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, FilesScreen)
        status = screen.query_one("#files-status", Static)
        tree = screen.query_one(DatasetTree)
        assert await wait_for(pilot, lambda: "Reading file" in str(status.render()))
        assert status.has_class("loading")

        # The small files appear while the large EDM file is still being read.
        assert await wait_for(pilot, lambda: tree.file_count() >= 1, tries=400)
        assert not screen.loaded
        dataset = tree.root.children[0]
        assert "of 4 files read" in str(dataset.label)

        assert await wait_for(pilot, lambda: screen.loaded, tries=600)
        assert str(status.render()) == "4 files in 1 dataset"
        assert not status.has_class("loading")
        assert str(dataset.label).endswith("4 files")
        names = [child.data.file.name for child in dataset.children if child.data is not None and child.data.file]
        assert names == sorted(names)


@run_async
async def test_files_cursor_selects_dataset(cms_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("uproot-Zmumu.root", "4mu_2012.csv"):
        (folder / name).symlink_to(cms_data / name)
    single = cms_data / "uproot-HZZ.root"
    app = CmsgenApp([folder, single], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        tree = screen.query_one(DatasetTree)
        assert app.selected_paths == [folder]

        await pilot.press("j")
        assert tree.cursor_node.data.kind == "file"  # type: ignore[union-attr]
        assert app.selected_paths == [folder / "4mu_2012.csv"]

        zmumu_branch = find_node(tree, lambda info: info.branch == "E1" and info.file == folder / "uproot-Zmumu.root")
        assert zmumu_branch is not None
        tree.move_cursor(zmumu_branch)
        assert await wait_for(pilot, lambda: app.selected_paths == [folder / "uproot-Zmumu.root"])

        zmumu_tree = find_node(tree, lambda info: info.kind == "object" and info.file == folder / "uproot-Zmumu.root")
        assert zmumu_tree is not None
        tree.move_cursor(zmumu_tree)
        assert await wait_for(pilot, lambda: tree.cursor_node is zmumu_tree)
        assert app.selected_paths == [folder / "uproot-Zmumu.root"]

        second_dataset = tree.root.children[1]
        tree.move_cursor(second_dataset)
        assert await wait_for(pilot, lambda: app.selected_paths == [single])
        assert app.report_paths() == [single]


@run_async
async def test_files_damaged_basket_message(cms_data: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.root"
    shutil.copyfile(cms_data / "uproot-Zmumu.root", damaged)
    damage_first_basket(damaged, "E1", keep_header=False)
    damage_first_basket(damaged, "Type", keep_header=True)
    app = CmsgenApp([damaged], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        tree = screen.query_one(DatasetTree)
        plot = screen.query_one("#files-plot", PlotView)
        for branch in ("E1", "Type"):
            node = find_node(tree, lambda info, name=branch: info.branch == name)
            assert node is not None
            tree.move_cursor(node)
            expected = f"The branch {branch!r} of 'events'"
            assert await wait_for(pilot, lambda expected=expected: plot.message.startswith(expected), tries=400), branch
            assert "cannot be read" in plot.message, branch
            assert "may be truncated or damaged" in plot.message, branch
            assert "needs the software that wrote it" not in plot.message, branch
            assert "(error)" not in plot.message, branch
        assert "decompression failed" in plot.message


@run_async
async def test_files_text_file_unreadable(tmp_path: Path) -> None:
    notes = tmp_path / "notes.root"
    notes.write_text("These are plain-text notes, not a ROOT file.\n")
    app = CmsgenApp([notes], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        tree = screen.query_one(DatasetTree)
        file_node = find_node(tree, lambda info: info.kind == "file")
        assert file_node is not None
        assert "unreadable" in str(file_node.label)
        assert not file_node.allow_expand
        tree.move_cursor(file_node)
        details = screen.query_one("#files-details", Static)
        assert await wait_for(pilot, lambda: "Unreadable" in str(details.render()))
        assert "it does not start with the bytes 'root'" in str(details.render())
        # The details pane grows past its usual 6 lines, so the whole message shows at 80x24.
        assert details.has_class("unreadable")
        assert details.size.height >= 7


@run_async
async def test_files_demo_sample_datasets(tmp_path: Path) -> None:
    write_sample(tmp_path / "sample", n_events=1000, seed=0, n_files=1)
    datasets = sample_datasets(tmp_path / "sample")
    app = CmsgenApp(datasets, tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        tree = screen.query_one(DatasetTree)
        assert [node.data.file for node in tree.root.children] == datasets  # type: ignore[union-attr]
        assert [path.name for path in datasets] == ["csv_pairs", "tutorial", "nanoaod"]


def test_describe_csv_column_without_sizes(cms_data: Path) -> None:
    structure = inspect_file(cms_data / "4mu_2012.csv").to_dict()
    table = structure["objects"][0]
    column = table["branches"][0]
    info = NodeInfo("branch", file=cms_data / "4mu_2012.csv", object_path=table["path"], branch=column["name"], details=column)
    text = describe_node(info)
    assert text.startswith("[b]Column[/b]")
    assert "compressed" not in text
    assert "?" not in text
    object_text = describe_node(NodeInfo("object", file=cms_data / "4mu_2012.csv", object_path=table["path"], details=table))
    assert "95 rows" in object_text


def test_plural_labels() -> None:
    assert plural(1, "entry") == "1 entry"
    assert plural(2, "entry") == "2 entries"
    assert plural(1, "file") == "1 file"
    assert plural(10_561, "branch") == "10,561 branches"


def test_histogram_title_fits_small_plot() -> None:
    histogram = histogram_1d(np.linspace(-5, 5, 10_561), bins=50, range=(-4, 4))
    outside = histogram.underflow + histogram.overflow
    assert outside > 0
    wide = histogram_title("Event", histogram, 120)
    assert wide == f"Event ({histogram.total:,} values)"
    narrow = histogram_title("Event", histogram, 42)
    assert narrow == "Event"
    rendered = plots.to_rich_text(plots.render_histogram(histogram, 42, 16, narrow)).plain
    assert rendered.splitlines()[0].strip() == f"Event ({outside} outside the range)"


@run_async
async def test_files_unexpected_histogram_error(cms_data: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken_read(*args: object) -> np.ndarray:
        raise RuntimeError("planted failure")

    monkeypatch.setattr("cmsgen.engine.sources.inspect.read_branch_values", broken_read)
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.loaded, tries=400)
        for _ in range(7):
            await pilot.press("j")
        plot = screen.query_one("#files-plot", PlotView)

        assert await wait_for(pilot, lambda: "planted failure" in plot.message, tries=400)
        assert not screen.building
        assert plot.renderer is None
