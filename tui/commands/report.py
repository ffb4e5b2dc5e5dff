"""``cmsgen-tui report``: the missing-field report of a dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

HELP = """Write the missing-field report of a dataset: per canonical field present /
derived / missing, bad-value counts, stored-versus-derived checks, duplicate
events, multiplicities, unreadable branches, drift between files and the
verdict per feature set. Files, globs and directories are read as one dataset.

With --dask the pass over the events runs as a Dask graph on a new local
cluster (--dask-workers worker processes), or with --scheduler on a running
Dask scheduler; the report is the same as without Dask. Dask needs the extra:
pip install 'cmsgen-tui\\[dask]'.

Exit codes: 0 report written (also when some files are unreadable: they are
listed), 3 path not found, 4 nothing readable, 5 invalid option value or Dask
scheduler not reachable."""


def register(app: typer.Typer) -> None:
    from cmsgen.tui.cli import handle_errors

    @app.command(name="report", help=HELP)
    @handle_errors
    def report_command(
        paths: list[Path] = typer.Argument(..., help="Files, globs or directories read as one dataset."),
        feature_set: str | None = typer.Option(None, "--feature-set", "-f", help="Judge only this feature set (dimuon, leading-objects)."),
        layout: str | None = typer.Option(None, "--layout", help="Force a layout by name instead of detecting it."),
        layout_file: list[Path] = typer.Option([], "--layout-file", help="Extra layout TOML file(s) to consider."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout (schema in docs/report-schema.md)."),
        markdown: Path | None = typer.Option(None, "--markdown", help="Also write the report as Markdown to this file."),
        output: Path | None = typer.Option(None, "--output", "-o", help="Also write the JSON report to this file."),
        dask: bool = typer.Option(False, "--dask", help="Read the events as a Dask graph on a new local cluster (or on --scheduler)."),
        scheduler: str | None = typer.Option(
            None, "--scheduler", metavar="ADDRESS", help="Run the Dask graph on the scheduler at ADDRESS (tcp://host:port); implies --dask."
        ),
        dask_workers: int | None = typer.Option(
            None, "--dask-workers", min=1, help="Number of worker processes of the local Dask cluster, one thread each (default 2)."
        ),
        scheduler_timeout: float = typer.Option(10.0, "--scheduler-timeout", min=0.1, help="Seconds to wait for the connection to --scheduler."),
    ) -> None:
        from cmsgen.engine.report import build_report, np_json_default, render_markdown

        from cmsgen.engine.errors import ConfigError

        sources = [str(p) for p in paths]
        if dask_workers is not None and scheduler:
            raise ConfigError("--dask-workers sets the size of a local cluster; leave it out with --scheduler.")
        if dask_workers is not None and not dask:
            raise ConfigError("--dask-workers needs --dask; add --dask to read the events on a local cluster.")
        if dask or scheduler:
            report = _build_report_dask(
                sources, scheduler, dask_workers or 2, scheduler_timeout, feature_set=feature_set, layout=layout, layout_files=tuple(layout_file)
            )
        else:
            report = build_report(sources, feature_set=feature_set, layout=layout, layout_files=tuple(layout_file))
        data = report.to_dict()
        text = json.dumps(data, indent=2, default=np_json_default)
        if output:
            _write_text(output, text)
        if markdown:
            _write_text(markdown, render_markdown(report))
        if as_json:
            typer.echo(text)
        else:
            print_report(data)


def _build_report_dask(paths: list[str], scheduler: str | None, n_workers: int, timeout: float, **options: Any) -> Any:
    """Build the report on a Dask cluster, with a progress bar on stderr fed by the read tasks as they finish."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cmsgen.engine.report.parallel import build_report_dask
    from cmsgen.engine.sources import open_dataset
    from cmsgen.engine.sources.partitions import dask_client

    # Missing files and unknown layouts are reported before a cluster starts.
    dataset = open_dataset(paths, layout=options.pop("layout"), layout_files=options.pop("layout_files"))
    with dask_client(scheduler, n_workers=n_workers, timeout=timeout) as client:
        progress_bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), console=Console(stderr=True), transient=True
        )
        with progress_bar:
            task = progress_bar.add_task("Dask report", total=1.0)

            def show(fraction: float, message: str) -> None:
                progress_bar.update(task, completed=fraction, description=message)

            return build_report_dask(paths, client, progress=show, dataset=dataset, **options)


def _write_text(path: Path, text: str) -> None:
    from cmsgen.engine.errors import CmsgenError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        raise CmsgenError(f"Cannot write {path} ({error.strerror}); choose a writable path.") from None


def _shortened(names: list[str], limit: int = 8) -> str:
    """Return up to ``limit`` names and the count of the others, for one terminal line."""
    if not names:
        return "none"
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f" and {len(names) - limit} more"
    return text


def print_report(data: dict[str, Any]) -> None:
    """Print the report as rich tables."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    layout = data["layout"]
    console.print(f"[bold]Layout:[/] {layout['name'] or 'none'} ({escape(layout['reason'])})")
    console.print(f"[bold]Events read:[/] {data['n_events']:,}")

    files = Table(title="Files", expand=False)
    for column in ("file", "format", "layout", "entries", "readable"):
        files.add_column(column)
    for f in data["dataset"]["files"]:
        files.add_row(Path(f["path"]).name, f["format"], f["layout"] or "-", f"{f['entries']:,}", "yes" if f["readable"] else f"[red]no[/]: {escape(f['error'] or '')}")
    console.print(files)

    if data["fields"]:
        fields = Table(title="Canonical fields")
        for column in ("collection", "field", "status", "from"):
            fields.add_column(column)
        colours = {"present": "green", "derived": "yellow", "missing": "red"}
        for row in data["fields"]:
            source = row["derivation"] or (_shortened(row["source"], 3) if row["source"] else "")
            fields.add_row(row["collection"], row["field"], f"[{colours[row['status']]}]{row['status']}[/]", escape(source))
        console.print(fields)
    elif layout["name"] is None:
        console.print("[yellow]No canonical fields: no known layout matches the branch names.[/]")
    else:
        console.print(f"[yellow]No canonical fields: the layout {escape(layout['name'])} maps no collection of objects.[/]")

    bad = [q for q in data["quality"] if q["null"] or q["nan"] or q["inf"] or q["sentinel"] or q["out_of_range"]]
    quality = Table(title="Bad values (fields with any)")
    for column in ("collection", "field", "values", "null", "NaN", "inf", "sentinel", "out of range"):
        quality.add_column(column)
    for q in bad:
        quality.add_row(q["collection"], q["field"], f"{q['n']:,}", str(q["null"]), str(q["nan"]), str(q["inf"]), str(q["sentinel"]), f"{q['out_of_range']} ({q['rule']})" if q["out_of_range"] else "0")
    if bad:
        console.print(quality)
    elif not data["n_events"]:
        console.print("[yellow]No events were read, so no values were checked.[/]")
    else:
        console.print("[green]No null, NaN, infinite, sentinel or out-of-range values in the canonical fields.[/]")

    if data["consistency"]:
        checks = Table(title="Stored against derived")
        for column in ("check", "collection", "compared", "disagree", "tolerance"):
            checks.add_column(column)
        for c in data["consistency"]:
            checks.add_row(escape(c["check"]), c["collection"], f"{c['n_compared']:,}", f"{c['n_disagree']:,}", f"{c['tolerance']:.0e} relative")
        console.print(checks)

    duplicates = data["duplicates"]
    if duplicates["checked"]:
        console.print(f"[bold]Duplicate events:[/] {duplicates['n_duplicates']} rows repeat a (run, event) pair")
    if data["multiplicities"]:
        multiplicity = Table(title="Multiplicities")
        for column in ("collection", "events", "empty", "mean", "histogram"):
            multiplicity.add_column(column)
        for name, m in data["multiplicities"].items():
            histogram = ", ".join(f"{k}:{v}" for k, v in list(m["histogram"].items())[:8])
            multiplicity.add_row(name, f"{m['events']:,}", f"{m['empty']:,}", f"{m['mean']:.2f}", histogram)
        console.print(multiplicity)
    elif data["n_events"]:
        console.print("[yellow]No multiplicities: the layout maps no collection of objects.[/]")
    # With no events read, the line under the bad values already states that nothing was counted.

    if data["unreadable"]:
        unreadable = Table(title=f"Unreadable ({len(data['unreadable'])})")
        for column in ("file", "branch", "reason"):
            unreadable.add_column(column)
        for u in data["unreadable"][:25]:
            unreadable.add_row(escape(Path(u["file"]).name), escape(u["branch"] or "(whole file)"), escape(u["reason"] or ""))
        console.print(unreadable)
        if len(data["unreadable"]) > 25:
            console.print(f"... {len(data['unreadable']) - 25} more; use --json or --markdown for the full list.")
        routes = {u["route"] for u in data["unreadable"] if u.get("route")}
        for route in routes:
            console.print(f"[bold]Conversion route:[/] {escape(route)}")
    for d in data["drift"]:
        changes = [f"missing {_shortened(d['missing'])}", f"extra {_shortened(d['extra'])}"]
        if d["type_changes"]:
            changes.append(f"type changed {_shortened([t['branch'] for t in d['type_changes']])}")
        console.print(escape(f"Drift: {Path(d['file']).name} against {Path(d['reference']).name}: {', '.join(changes)}"))
    for c in data["cleaning"]:
        console.print(f"[yellow]Cleaned:[/] {escape(Path(c['file']).name)}: {escape(c['action'])}")
    for note in data["notes"]:
        console.print(f"[yellow]Note:[/] {escape(note)}")

    verdict = Table(title="Verdict")
    for column in ("feature set", "trainable", "events", "reason"):
        verdict.add_column(column)
    for v in data["verdict"]:
        verdict.add_row(escape(v["feature_set"]), "[green]yes[/]" if v["trainable"] else "[red]no[/]", f"{v['n_events']:,}", escape(v["reason"]))
    console.print(verdict)
