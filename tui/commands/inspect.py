"""``cmsgen-tui inspect PATH...``: the structure of data files, as rich trees or JSON."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from cmsgen.engine.sources.inspect import FileStructure, ObjectStructure

# Maximum rows of a branch table unless --all is given. Unreadable branches take the rows first.
DEFAULT_MAX_ROWS = 60
# Maximum unreadable-branch reasons listed per tree or table unless --all is given.
MAX_REASONS = 20


def _size_text(value: int | None) -> str:
    """Format a byte count in decimal units, or "-" when it is unknown."""
    from rich.filesize import decimal

    return "-" if value is None else decimal(value)


def _branch_table(item: ObjectStructure, show_all: bool) -> Table:
    """Build a table of the object's branches, or of every branch with ``show_all``.

    Without ``show_all`` the table lists the top-level and the unreadable branches,
    at most ``DEFAULT_MAX_ROWS`` of them, and unreadable branches are kept first.
    """
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("branch", overflow="fold", ratio=3)
    table.add_column("type", overflow="fold", ratio=2)
    for heading in ("compressed", "uncompressed", "compression", "readable"):
        table.add_column(heading, no_wrap=True)

    rows = []
    for branch in item.all_branches():
        depth = branch.path.count("/")
        if show_all or depth == 0 or not branch.readable:
            rows.append((depth, branch))
    hidden = 0
    if not show_all and len(rows) > DEFAULT_MAX_ROWS:
        kept = [row for row in rows if not row[1].readable][:DEFAULT_MAX_ROWS]
        kept_ids = {id(row[1]) for row in kept}
        for row in rows:
            if len(kept) >= DEFAULT_MAX_ROWS:
                break
            if id(row[1]) not in kept_ids:
                kept.append(row)
                kept_ids.add(id(row[1]))
        hidden = len(rows) - len(kept)
        rows = [row for row in rows if id(row[1]) in kept_ids]

    for depth, branch in rows:
        name = "  " * depth + branch.name
        if branch.children and not show_all:
            name += f" (+{sum(1 for _ in branch.walk()) - 1})"
        readable = "yes" if branch.readable else "[red]no[/red]"
        table.add_row(
            name,
            branch.type,
            _size_text(branch.compressed_bytes),
            _size_text(branch.uncompressed_bytes),
            branch.compression or "-",
            readable,
        )
    if hidden:
        table.add_row(f"[dim]... {hidden} more rows; use --all to list every branch[/dim]", "", "", "", "", "")
    return table


def _print_structure(console: Console, structure: FileStructure, show_all: bool) -> None:
    """Print one file as a Rich tree of its objects, branch tables and unreadable-branch reasons."""
    from rich.tree import Tree

    root = Tree(f"[bold]{structure.path}[/bold]  ({structure.format}, {_size_text(structure.size_bytes)})")
    directories = [item for item in structure.objects if item.kind == "directory"]
    if directories:
        root.add(f"{len(directories)} directories")
    for item in structure.data_objects:
        total = sum(1 for _ in item.all_branches())
        unreadable = sum(1 for branch in item.all_branches() if not branch.readable)
        if item.kind == "tree":
            label = "branches"
        elif item.kind == "rntuple":
            label = "fields"
        else:
            label = "columns"
        entries = "?" if item.entries is None else f"{item.entries:,}"
        summary = f"[bold]{item.kind} {item.path}[/bold]: {entries} entries, {total} {label}"
        if unreadable:
            summary += f", [red]{unreadable} unreadable[/red]"
        node = root.add(summary)
        for note in item.notes:
            node.add(f"[yellow]note:[/yellow] {note}")
        if item.branches:
            node.add(_branch_table(item, show_all))
        reasons = [branch for branch in item.all_branches() if not branch.readable]
        limit = len(reasons) if show_all else MAX_REASONS
        for branch in reasons[:limit]:
            node.add(f"[red]unreadable[/red] {branch.path}: {branch.reason}")
        if len(reasons) > limit:
            node.add(f"[dim]... {len(reasons) - limit} more unreadable branches; use --all or --json to list them[/dim]")
    console.print(root)


def _warn(message: str) -> None:
    typer.secho(f"Warning: {message}", err=True, fg=typer.colors.YELLOW)


def _print_branch_values(spec: str, paths: list[str], max_entries: int) -> None:
    """Read one branch and print a one-line summary of its values."""
    from cmsgen.engine.errors import ConfigError
    from cmsgen.engine.sources.inspect import read_branch_values

    object_path, separator, branch = spec.rpartition(":")
    if not separator or not branch:
        raise ConfigError(f"The --branch value {spec!r} is invalid; write it as OBJECT:BRANCH, for example Events:Muon_pt.")
    if len(paths) != 1:
        raise ConfigError(f"--branch reads one file, but {len(paths)} paths were given; give a single file.")
    values = read_branch_values(paths[0], object_path, branch, max_entries=max_entries)
    if values.size == 0:
        typer.echo(f"{spec}: 0 values")
        return
    typer.echo(
        f"{spec}: {values.size:,} values, min {values.min():.6g}, max {values.max():.6g}, "
        f"mean {values.mean():.6g}, NaN {int((values != values).sum())}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``inspect`` subcommand to ``app``."""
    from cmsgen.tui.cli import handle_errors

    @app.command("inspect")
    @handle_errors
    def inspect_command(
        paths: Annotated[list[str], typer.Argument(help="Files, globs or directories (searched recursively) to inspect.")],
        json_output: Annotated[bool, typer.Option("--json", help="Print the structure as JSON on stdout.")] = False,
        show_all: Annotated[bool, typer.Option("--all", help="List every branch, sub-branches included.")] = False,
        branch: Annotated[
            str | None,
            typer.Option("--branch", help="Read one branch, given as OBJECT:BRANCH, and print a summary of its values."),
        ] = None,
        max_entries: Annotated[int, typer.Option(help="Maximum entries read with --branch.", min=1)] = 100_000,
    ) -> None:
        """Show what data files contain: directories, trees, RNTuples, tables, branches and whether they can be read.

        A file that cannot be opened is reported and the other files are still
        inspected. The exit code is 4 when no file can be opened, and 7 when
        every tree and table has 0 entries.
        """
        from rich.console import Console

        from cmsgen.engine.errors import NoEventsError, UnreadableFileError
        from cmsgen.engine.sources.inspect import expand_paths, inspect_file

        if branch is not None:
            _print_branch_values(branch, paths, max_entries)
            return

        files = [item for path in paths for item in expand_paths(path)]
        structures = [inspect_file(item) for item in files]
        broken = [item for item in structures if item.error]
        readable = [item for item in structures if not item.error]

        if json_output:
            json.dump([item.to_dict() for item in structures], sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            console = Console()
            for structure in readable:
                _print_structure(console, structure, show_all)

        if not readable:
            if len(broken) == 1:
                raise UnreadableFileError(broken[0].error or f"The file {broken[0].path} cannot be read.")
            for item in broken:
                _warn(item.error or f"The file {item.path} cannot be read.")
            raise UnreadableFileError(f"None of the {len(broken)} files can be read; see the warnings above for each file.")
        for item in broken:
            _warn(item.error or f"The file {item.path} cannot be read.")

        for structure in readable:
            unreadable = sum(1 for item in structure.data_objects for node in item.all_branches() if not node.readable)
            if unreadable:
                _warn(
                    f"{unreadable} {'branch' if unreadable == 1 else 'branches'} in {structure.path} cannot be read (marked unreadable above); "
                    "analyses can use the other branches."
                )

        if all(item.entries == 0 for structure in readable for item in structure.data_objects):
            names = ", ".join(structure.path for structure in readable)
            raise NoEventsError(f"Every tree and table in {names} has 0 entries; give a file with events.")
