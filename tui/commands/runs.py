"""``cmsgen-tui runs [DIR]``: list training runs with their state, progress and best metric."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cmsgen.tui.widgets.metrics_tail import model_label

# Status keys written by ``runs --json``, in this order, plus the run's path.
JSON_KEYS = (
    "name",
    "model",
    "feature_set",
    "state",
    "progress",
    "step",
    "total_steps",
    "epoch",
    "total_epochs",
    "best_metric",
    "best_step",
    "message",
    "started",
    "updated",
    "world_size",
)


def run_rows(runs_dir: Path) -> list[dict[str, Any]]:
    """Return one status object per run under ``runs_dir``, newest first, with its ``path``."""
    from cmsgen.engine.training.runs import list_runs

    rows = []
    for run in list_runs(runs_dir):
        status = run.status()
        row = {key: status.get(key) for key in JSON_KEYS}
        # The folder name is what --resume and generate accept; a copied or renamed run keeps
        # the old name in its status.json.
        row["name"] = run.name
        row["path"] = str(run.path)
        rows.append(row)
    return rows


def _progress_text(row: dict[str, Any]) -> str:
    progress, step, total = row.get("progress"), row.get("step"), row.get("total_steps")
    if not isinstance(progress, (int, float)) or not isinstance(step, int) or not isinstance(total, int):
        return "-"
    return f"{100 * progress:.0f}% ({step}/{total})"


def _metric_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def register(app: typer.Typer) -> None:
    from cmsgen.tui.cli import handle_errors

    @app.command(name="runs")
    @handle_errors
    def runs_command(
        runs_dir: Annotated[Path, typer.Argument(help="Directory that contains the run directories.")] = Path("runs"),
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    ) -> None:
        """List the runs in DIR: name, model, state, progress and best w1_mass (GeV)."""
        from cmsgen.engine.errors import DataNotFoundError

        if not runs_dir.is_dir():
            raise DataNotFoundError(f"runs directory {runs_dir} not found. Train a model first or give another DIR.")
        rows = run_rows(runs_dir)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            typer.echo(f"no runs in {runs_dir}")
            return

        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        # Run names are never wrapped or cut, so they can be copied into --resume or generate.
        name_width = max(len("name"), *(len(str(row["name"])) for row in rows))
        table.add_column("name", no_wrap=True, min_width=name_width)
        for heading in ("model", "features", "state", "progress", "best w1_mass [GeV]", "message"):
            table.add_column(heading, overflow="fold")
        for row in rows:
            table.add_row(
                str(row["name"]),
                model_label(row),
                str(row.get("feature_set") or "-"),
                str(row["state"]),
                _progress_text(row),
                _metric_text(row.get("best_metric")),
                str(row.get("message") or ""),
            )
        if sys.stdout.isatty():
            Console().print(table)
            return
        # Piped output is not wrapped at 80 columns: each run stays on one line for grep and cut.
        console = Console(width=100_000)
        with console.capture() as capture:
            console.print(table)
        typer.echo("\n".join(line.rstrip() for line in capture.get().splitlines()))
