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
    if attach is not None:
        attach = resolve_attached_run(attach, runs_dir)
    require_terminal()
    CmsgenApp(paths, runs_dir, attach_run=attach).run()


def require_terminal() -> None:
    """Raise ConfigError unless standard input and output are a terminal, which the app draws on and reads keys from.

    Without one, Textual would keep running and drawing into a file or pipe until it is killed.
    """
    import sys

    from cmsgen.engine.errors import ConfigError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ConfigError(
            "the app needs a terminal, but standard input or output is not one. Run it in a terminal, "
            "or use the headless commands (report, train, validate, demo --headless) in scripts."
        )


def resolve_attached_run(attach: Path, runs_dir: Path) -> Path:
    """Return the run directory of ``attach``: a path to a run directory, or a run name under ``runs_dir``.

    Raises:
        DataNotFoundError: Neither is a run directory (a folder with a status.json).
    """
    from cmsgen.engine.errors import DataNotFoundError

    named = runs_dir / attach
    for folder in (attach, named):
        if (folder / "status.json").is_file():
            return folder
    raise DataNotFoundError(
        f"run {attach} not found: neither {attach} nor {named} is a run directory (with a status.json). "
        "Give a run name under --runs-dir or the path of a run directory."
    )


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
            Path | None, typer.Option("--attach", help="Run (a name under --runs-dir, or a run directory) whose live panels open first.")
        ] = None,
    ) -> None:
        """Open the terminal app: files, report, train, runs and validate screens."""
        run_app(list(paths or []), runs_dir, attach)
