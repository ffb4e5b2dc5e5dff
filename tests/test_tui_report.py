"""Pilot tests of the Report screen on real CMS files: the selected dataset, tables that fit, details and exports."""

from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text
from test_report import make_damaged_dataset
from test_tui_runs import run_async, wait_for
from textual.widgets import DataTable, Input, Static, TabbedContent

from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.screens.report import SECTIONS, ExportScreen, ReportScreen, RowScreen, plain_text, shorten_paths, summary_text


@run_async
async def test_report_tables_and_export(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs", initial_mode="report")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert await wait_for(pilot, lambda: screen.report is not None, tries=600)
        verdict = screen.query_one("#table-verdict", DataTable)
        fields = screen.query_one("#table-fields", DataTable)
        assert verdict.row_count == len(screen.report["verdict"])  # type: ignore[index]
        assert fields.row_count == len(screen.report["fields"])  # type: ignore[index]
        assert verdict.row_count > 0
        assert "dimuon" in str(verdict.get_row_at(0)[0])

        # The vim keys move the cursor of the focused table.
        verdict.focus()
        await pilot.press("j")
        assert verdict.cursor_row == 1
        await pilot.press("k")
        assert verdict.cursor_row == 0

        await pilot.press("e")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        field = app.screen.query_one("#export-path", Input)
        field.value = str(tmp_path / "exports" / "zmumu")
        await pilot.press("enter")
        markdown = tmp_path / "exports" / "zmumu.md"
        exported = tmp_path / "exports" / "zmumu.json"
        assert await wait_for(pilot, lambda: exported.is_file())
        assert markdown.read_text().strip()
        assert json.loads(exported.read_text())["n_events"] == screen.report["n_events"]  # type: ignore[index]


@run_async
async def test_report_missing_path_error(tmp_path: Path) -> None:
    app = CmsgenApp([tmp_path / "does-not-exist.root"], tmp_path / "runs", initial_mode="report")
    async with app.run_test(size=(80, 24)) as pilot:
        from cmsgen.tui.screens.error import ErrorScreen

        assert await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), tries=400)
        message = str(app.screen.query_one("#error-message").render())
        assert "does-not-exist.root" in message

        # Export after the failure names the failure, not a build in progress.
        app.screen.dismiss()
        await pilot.pause()
        await pilot.press("e")
        assert await wait_for(pilot, lambda: any("no report to export" in n.message for n in app._notifications))
        assert not any("still being built" in n.message for n in app._notifications)


def columns_start_within(table: DataTable, width: int) -> bool:
    """Return whether the last column of ``table`` starts before ``width`` cells, each column with its padding."""
    starts = 0
    for column in list(table.columns.values())[:-1]:
        starts += column.get_render_width(table)
    return starts < width


@run_async
async def test_report_follows_selected_dataset(cms_data: Path, tmp_path: Path) -> None:
    zmumu = cms_data / "uproot-Zmumu.root"
    hzz = cms_data / "uproot-HZZ.root"
    app = CmsgenApp([zmumu, hzz], tmp_path / "runs", initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        app.select_dataset([zmumu])
        await pilot.press("2")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ReportScreen) and app.screen.report is not None, tries=600)
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert screen.report["dataset"]["paths"] == [str(zmumu)]  # type: ignore[index]
        assert screen.report["n_events"] == 2304  # type: ignore[index]
        summary = str(screen.query_one("#report-summary", Static).render())
        assert "uproot-Zmumu.root" in summary
        assert "uproot-HZZ.root" not in summary

        await pilot.press("4")
        app.select_dataset([hzz])
        await pilot.press("2")
        assert await wait_for(pilot, lambda: screen.report is not None and screen.report["dataset"]["paths"] == [str(hzz)], tries=600)
        assert screen.report is not None
        assert screen.report["layout"]["name"] == "hep-tutorial"  # type: ignore[index]
        assert "uproot-HZZ.root" in str(screen.query_one("#report-summary", Static).render())

        # Shown again with the same selection, the report is kept, not rebuilt.
        report = screen.report
        await pilot.press("4")
        await pilot.press("2")
        await pilot.pause()
        assert screen.report is report


def test_summary_fits_80_columns(cms_data: Path) -> None:
    from cmsgen.engine.report import build_report

    report = build_report(cms_data / "uproot-Zmumu.root").to_dict()
    paths = [cms_data / name for name in ("uproot-Zmumu.root", "uproot-HZZ.root", "Zmumu_Run2011A.csv", "4mu_2012.csv")]
    lines = [Text.from_markup(line).plain for line in summary_text(report, paths, 80).splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert len(line) <= 78, line
    assert "uproot-Zmumu.root" in lines[0]
    assert "more" in lines[0]
    assert "trainable: dimuon, leading-objects[muons, n=2]" in lines[2]
    assert lines[2].startswith("1,804 duplicate events · ")


def test_summary_counts_files_read(cms_data: Path) -> None:
    from cmsgen.engine.report import build_report

    paths = [cms_data / "uproot-Zmumu.root", cms_data / "4mu_2012.csv", cms_data / "Zmumu_Run2011A.csv"]
    report = build_report(paths).to_dict()
    lines = [Text.from_markup(line).plain for line in summary_text(report, paths, 80).splitlines()]

    # The two Z -> mu mu files share the layout csv-pairs, and the four-lepton CSV is not read.
    assert " events from 2 of 3 files · layout csv-pairs · " in lines[1]
    assert len(lines[1]) <= 78


def test_shorten_paths_keeps_names() -> None:
    assert shorten_paths(["/data/a.root", "/data/b.root"], 40) == "/data: a.root, b.root"
    assert shorten_paths(["/data/a.root", "/data/b.root", "/data/c.root"], 20) == "/data: a.root and 2 more"
    long_path = "/very/long/folder/name/that/goes/on/file.root"
    assert shorten_paths([long_path], 20) == "…" + long_path[-19:]


@run_async
async def test_report_columns_fit_80(legacy_data: Path, tmp_path: Path) -> None:
    aod = legacy_data / "opendatatrigger_EDM_AOD_Run2010B_Jet_2ev.root"
    app = CmsgenApp([aod], tmp_path / "runs", initial_mode="report")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert await wait_for(pilot, lambda: screen.report is not None, tries=600)
        for section in SECTIONS:
            table = screen.query_one(f"#table-{section}", DataTable)
            assert columns_start_within(table, 78), section

        tabs = screen.query_one("#report-tabs", TabbedContent)
        tabs.active = "tab-unreadable"
        unreadable = screen.query_one("#table-unreadable", DataTable)
        unreadable.focus()
        long_row = next(index for index, row in enumerate(screen.rows["unreadable"]) if len(row["branch"]) > 40)
        unreadable.move_cursor(row=long_row)
        branch = screen.rows["unreadable"][long_row]["branch"]
        details = screen.query_one("#report-details", Static)
        assert await wait_for(pilot, lambda: branch in str(details.render()).replace("\n", ""))
        assert str(unreadable.get_row_at(long_row)[1]).endswith("…")

        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, RowScreen))
        row_text = str(app.screen.query_one("#row-text", Static).render())
        assert f"branch: {branch}" in row_text
        assert "route: convert the AOD with the CMS Physics Object Extractor Tool (POET)" in row_text.replace("\n", " ")
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen is screen)

        files = screen.query_one("#table-files", DataTable)
        trees = plain_text("trees", screen.rows["files"][0]["trees"])
        assert trees.startswith("MetaData (tree, 1 entry), ParameterSets (tree, ")
        assert "{" not in trees
        assert str(files.get_row_at(0)[3]).startswith("MetaData")


@run_async
async def test_report_fields_without_events(cms_data: Path, tmp_path: Path) -> None:
    damaged = make_damaged_dataset(tmp_path / "damaged", cms_data / "uproot-Zmumu.root")
    app = CmsgenApp([damaged], tmp_path / "runs", initial_mode="report")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert await wait_for(pilot, lambda: screen.report is not None, tries=600)
        assert screen.query_one("#table-fields", DataTable).row_count == 5
        assert screen.query_one("#table-quality", DataTable).row_count == 0
        assert screen.query_one("#table-unreadable", DataTable).row_count == 2
        assert "layout csv-pairs" in str(screen.query_one("#report-summary", Static).render())

        screen.query_one("#report-tabs", TabbedContent).active = "tab-quality"
        details = screen.query_one("#report-details", Static)
        assert await wait_for(pilot, lambda: "No events were read" in str(details.render()))


@run_async
async def test_export_asks_before_overwriting(cms_data: Path, tmp_path: Path) -> None:
    base = tmp_path / "exports" / "zmumu"
    base.parent.mkdir()
    markdown, exported = base.parent / "zmumu.md", base.parent / "zmumu.json"
    markdown.write_text("old logbook entry\n")
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs", initial_mode="report")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert await wait_for(pilot, lambda: screen.report is not None, tries=600)

        await pilot.press("e")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        export = app.screen
        export.query_one("#export-path", Input).value = str(base)
        await pilot.press("enter")
        warning = export.query_one("#export-warning", Static)
        assert await wait_for(pilot, lambda: "already exist" in str(warning.render()))
        assert "zmumu-2" in str(warning.render())
        assert app.screen is export
        assert markdown.read_text() == "old logbook entry\n"
        assert not exported.exists()

        # ctrl+n picks the first free name; Enter writes there and leaves the old files alone.
        await pilot.press("ctrl+n")
        assert export.query_one("#export-path", Input).value == str(base.parent / "zmumu-2")
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: (base.parent / "zmumu-2.json").is_file())
        assert markdown.read_text() == "old logbook entry\n"

        # A second Enter on a path with existing files overwrites them.
        await pilot.press("e")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        export = app.screen
        export.query_one("#export-path", Input).value = str(base)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: "already exist" in str(export.query_one("#export-warning", Static).render()))
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: exported.is_file())
        assert markdown.read_text().startswith("# Missing-field report")
        assert app.screen is screen
