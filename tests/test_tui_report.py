"""Pilot tests of the Report screen on real CMS files: tables filled and exports written."""

from __future__ import annotations

import json
from pathlib import Path

from test_tui_runs import run_async, wait_for
from textual.widgets import DataTable, Input

from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.screens.report import ExportScreen, ReportScreen


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
