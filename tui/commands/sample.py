"""``cmsgen-tui sample DIR``: write the synthetic dimuon sample with planted defects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

LAYOUT_HELP = "Layout to write (repeat for several): csv_pairs, tutorial or nanoaod. Default: all three."


def register(app: typer.Typer) -> None:
    """Add the ``sample`` subcommand to ``app``."""
    from cmsgen.tui.cli import handle_errors

    @app.command("sample")
    @handle_errors
    def sample_command(
        directory: Annotated[Path, typer.Argument(help="Folder to write the sample into (created if absent).")],
        events: Annotated[int, typer.Option("--events", "-n", help="Number of events per layout, split over the files.")] = 100_000,
        seed: Annotated[int, typer.Option(help="Random seed. The same seed writes the same files.")] = 0,
        layout: Annotated[list[str] | None, typer.Option("--layout", help=LAYOUT_HELP)] = None,
        files: Annotated[int, typer.Option("--files", help="Data files per layout, besides the zero-entry file.")] = 3,
    ) -> None:
        """Write a synthetic Z/Drell-Yan dimuon sample in legacy CMS layouts, with known defects listed in manifest.json."""
        from rich.console import Console
        from rich.progress import Progress
        from rich.table import Table

        from cmsgen.engine.sample import LAYOUTS, MANIFEST_NAME, write_sample

        layouts = tuple(layout) if layout else LAYOUTS
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("writing the sample", total=1.0)

            def report(fraction: float, message: str) -> None:
                progress.update(task, completed=fraction, description=message)

            manifest = write_sample(directory, n_events=events, seed=seed, progress=report, layouts=layouts, n_files=files)

        console = Console()
        table = Table(title=f"Sample in {directory}", show_edge=False)
        for heading in ("layout", "files", "events", "planted defects"):
            table.add_column(heading)
        for name in manifest.layouts:
            layout_files = [item for item in manifest.files if item.layout == name]
            kinds = Counter(item.kind for item in manifest.defects if item.layout == name)
            table.add_row(
                name,
                str(len(layout_files)),
                f"{sum(item.entries for item in layout_files):,}",
                ", ".join(f"{kind} x{count}" if count > 1 else kind for kind, count in sorted(kinds.items())),
            )
        console.print(table)
        console.print(f"Seed {manifest.seed}. Every planted defect is listed in {Path(directory) / MANIFEST_NAME}.")
