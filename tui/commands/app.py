"""The ``app`` subcommand: open the Textual app on files or directories (``cmsgen-tui [PATH...]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def run_app(paths: list[Path], runs_dir: Path, attach: Path | None = None) -> None:
    """Check that the paths and the attached run exist, then run the app until the user quits."""
    from cmsgen.engine.errors import DataNotFoundError
    from cmsgen.tui.app import CmsgenApp

    for path in paths:
        if not path.exists():
            raise DataNotFoundError(f"{path} not found; give existing data files or directories")
    if attach is not None and not (attach / "status.json").is_file():
        raise DataNotFoundError(f"{attach} is not a run directory (no status.json); give a folder under the runs directory")
    CmsgenApp(paths, runs_dir, attach_run=attach).run()


def register(app: typer.Typer) -> None:
    from cmsgen.tui.cli import handle_errors

    @app.command(name="app")
    @handle_errors
    def app_command(
        paths: Annotated[
            list[Path] | None,
            typer.Argument(help="Data files or directories to open (default: the current directory)."),
        ] = None,
        runs_dir: Annotated[
            Path,
            typer.Option(
                "--runs-dir",
                "--run-dir",
                help="Directory of training runs, where the Train screen writes and the Runs screen looks.",
            ),
        ] = Path("runs"),
        attach: Annotated[
            Path | None, typer.Option("--attach", help="Run directory whose live panels open first.")
        ] = None,
    ) -> None:
        """Open the terminal app: files, report, train, runs and validate screens."""
        run_app(list(paths or []), runs_dir, attach)
