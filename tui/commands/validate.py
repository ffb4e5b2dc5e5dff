"""``cmsgen-tui validate``: compare generated with real events and print a pass/warn/fail table.

Two forms:

- ``cmsgen-tui validate RUN`` compares the run's test split with events
  sampled from its best checkpoint (or ``--checkpoint last``) and writes
  ``validation.json`` into the run.
- ``cmsgen-tui validate --real PATH --generated PATH --feature-set NAME``
  compares two datasets (for example a file written by ``generate``) read
  through ``load_features``.

stdout receives the table, or only the JSON with ``--json``. With ``--json``,
terminal plots and "wrote" messages go to stderr so that they do not mix with
the JSON. Progress goes to stderr, and not with ``--json``: a live status line
on a terminal, otherwise one line per tenth of the work.

Every option is checked before any event is read or generated, and a bad
value ends with one sentence and exit code 5.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from cmsgen.engine.validation.report import ValidationReport

VERDICT_STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}
SECTION_TITLES = {
    "univariate": "Univariate figures",
    "multivariate": "Multivariate figures (standardised features)",
    "physics": "Physics checks",
    "memorisation": "Memorisation",
}
# Largest seed. numpy and torch both accept every seed from 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
# Feature-set options whose value is a list. A single value such as fields=pt becomes a one-item list.
LIST_OPTIONS = frozenset({"fields"})


def parse_assignments(values: list[str] | None, option: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options into a dict.

    A value becomes a bool (``true``/``false`` in any case), an int or a float
    when it parses as one, and stays a string otherwise. A TOML list
    (``fields=["pt", "eta"]``) or a comma-separated list (``fields=pt,eta``)
    becomes a list of such values, and so does any value of a key in
    ``LIST_OPTIONS``.
    """
    from cmsgen.engine.errors import ConfigError

    result: dict[str, Any] = {}
    for item in values or []:
        key, separator, text = item.partition("=")
        key = key.strip()
        if not separator or not key:
            example = "n=4" if option == "--option" else "pass_factor=3"
            raise ConfigError(f"{option} {item!r} is invalid: expected KEY=VALUE, for example {option} {example}")
        if key in result:
            raise ConfigError(f"{option} {key} is given twice; give each key once")
        value = _parse_list(text.strip(), option, item)
        if key in LIST_OPTIONS and not isinstance(value, list):
            value = [value]
        result[key] = value
    return result


def _parse_list(text: str, option: str, item: str) -> Any:
    """Parse a TOML list, a comma-separated list or a single value (see :func:`parse_assignments`)."""
    import tomllib

    from cmsgen.engine.errors import ConfigError

    if text.startswith("["):
        try:
            return tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(
                f"{option} {item!r} is invalid: the value is not a TOML list ({error}); "
                f'write it as KEY=a,b or KEY=["a", "b"]'
            ) from None
    if "," in text:
        return [_parse_value(part.strip()) for part in text.split(",") if part.strip()]
    return _parse_value(text)


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _progress_printer(console: Console | None, live: bool) -> tuple[Any, Any]:
    """Return (progress callback, rich status) that report progress on ``console``.

    With ``live`` a one-line rich status is started and updated in place.
    Otherwise a plain line is printed at the first message and whenever
    another tenth of the work is done, and the status is None. Returns
    (None, None) when ``console`` is None.
    """
    if console is None:
        return None, None
    if live:
        status = console.status("validating…")
        status.start()

        def update(fraction: float, message: str) -> None:
            status.update(f"{fraction:4.0%} {message}")

        return update, status

    printed = -1

    def print_line(fraction: float, message: str) -> None:
        nonlocal printed
        tenth = int(fraction * 10)
        if tenth > printed:
            printed = tenth
            console.print(f"{fraction:4.0%} {message}", highlight=False, soft_wrap=True)

    return print_line, None


def validate_files(
    real: list[Path],
    generated: list[Path],
    feature_set: str,
    options: dict[str, Any],
    train: list[Path] | None,
    seed: int,
    thresholds: dict[str, Any],
    max_events: int | None,
    progress: Any,
) -> ValidationReport:
    """Read both datasets, and the training data if given, with ``load_features`` and validate them.

    Every selected event is read, so that ``inputs.selection`` counts the
    events that the selection removed, and ``validate_arrays`` then draws a
    seeded random subsample of at most ``max_events`` per dataset. A
    ``selection_removed`` warning is added when the selection removes a
    larger fraction of the generated events than of the real ones, because
    those events (for example same-sign pairs) never reach a figure.
    """
    from cmsgen.engine.features import get_feature_set, load_features
    from cmsgen.engine.validation import validate_arrays

    fs = get_feature_set(feature_set, **options)
    real_table = load_features([str(p) for p in real], fs)
    generated_table = load_features([str(p) for p in generated], fs)
    train_table = load_features([str(p) for p in train], fs) if train else None
    train_values = train_table.values if train_table is not None else None
    report = validate_arrays(
        real_table.values,
        generated_table.values,
        fs,
        train=train_values,
        seed=seed,
        thresholds=thresholds,
        max_events=max_events,
        progress=progress,
    )
    report.inputs["real_files"] = real_table.files
    report.inputs["generated_files"] = generated_table.files
    report.inputs["options"] = dict(fs.options)
    tables = {"real": real_table, "generated": generated_table}
    if train_table is not None:
        tables["train"] = train_table
    report.inputs["selection"] = {label: selection_counts(table) for label, table in tables.items()}
    report.warnings += selection_warnings(report.inputs["selection"], fs.name, report.settings.physicality_pass)
    return report


def selection_counts(table: Any) -> dict[str, int]:
    """Return the events read, removed by the selection, removed as repeated (run, event) pairs and selected."""
    n_selected = len(table.values)
    n_duplicates = int(table.n_duplicates_dropped)
    return {
        "n_read": int(table.n_read),
        "n_removed_by_selection": int(table.n_read) - n_selected - n_duplicates,
        "n_duplicates_removed": n_duplicates,
        "n_selected": n_selected,
    }


def selection_warnings(selection: dict[str, dict[str, int]], feature_set: str, tolerance: float) -> list[dict[str, str]]:
    """Return a ``selection_removed`` warning when the selection removes more of the generated events than of the real ones.

    ``tolerance`` is the largest excess of the removed fraction that passes without a warning.
    """
    fractions = {
        label: counts["n_removed_by_selection"] / counts["n_read"] if counts["n_read"] else 0.0
        for label, counts in selection.items()
    }
    if fractions["generated"] - fractions["real"] <= tolerance:
        return []
    generated = selection["generated"]
    return [
        {
            "code": "selection_removed",
            "message": (
                f"the {feature_set} selection removed {generated['n_removed_by_selection']} of "
                f"{generated['n_read']} generated events ({fractions['generated']:.1%}) but "
                f"{fractions['real']:.1%} of the real events; the removed events (for example same-sign pairs "
                "with opposite_charge=true) are in no figure or physicality check; pass --option "
                "opposite_charge=false to include same-sign pairs"
            ),
        }
    ]


def print_summary(report: dict[str, Any], console: Console) -> None:
    """Print the title, one pass/warn/fail table per section, the summary line and any warnings of a report dict.

    The tables have no section column, and a univariate variable is named on
    its first row only, so that the rows fit on 80 columns.
    """
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from cmsgen.engine.validation.summary import SECTIONS, selection_lines, summary_rows

    inputs = report["inputs"]
    title = f"Validation of {inputs.get('run') or 'generated events'} ({inputs['feature_set']}): "
    title += f"{inputs['n_generated']} generated vs {inputs['n_real']} real events"
    console.print(f"[bold]{escape(title)}[/]", soft_wrap=True)
    if inputs.get("checkpoint"):
        console.print(f"checkpoint: {inputs['checkpoint']}", highlight=False)
    for line in selection_lines(inputs):
        console.print(escape(line), highlight=False)
    console.print("baseline: the same figure on two random halves of the real events", highlight=False)

    rows = summary_rows(report)
    for section in SECTIONS:
        section_rows = [row for row in rows if row["section"] == section]
        if not section_rows:
            continue
        console.print()
        table = Table(
            box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=SECTION_TITLES[section], title_justify="left"
        )
        show_variable = section != "multivariate"
        if show_variable:
            table.add_column("variable", overflow="fold")
        table.add_column("figure", overflow="fold")
        table.add_column("generated vs real", overflow="fold")
        table.add_column("baseline", overflow="fold")
        table.add_column("verdict", no_wrap=True)
        previous = None
        for row in section_rows:
            # Units such as [rad] and [bit] would otherwise be read as rich markup tags and vanish.
            cells = [escape(row[key]) for key in ("figure", "value", "baseline")] + [_verdict_markup(row["verdict"])]
            if show_variable:
                cells.insert(0, escape(row["variable"]) if row["variable"] != previous else "")
            previous = row["variable"]
            table.add_row(*cells)
        console.print(table)
        for note in (row["note"] for row in section_rows if row["note"]):
            console.print(escape(note), highlight=False)

    summary = report["summary"]
    console.print(
        f"verdict: {_verdict_markup(summary['verdict'])} ({summary['pass']} pass, {summary['warn']} warn, "
        f"{summary['fail']} fail, {summary['skipped']} skipped)"
    )
    console.print(f"memorisation: {escape(report['memorisation'].get('reason', 'skipped'))}", highlight=False)
    for warning in report.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {escape(warning['message'])}", highlight=False)


def _verdict_markup(verdict: str) -> str:
    style = VERDICT_STYLES.get(verdict, "")
    return f"[{style}]{verdict}[/]" if style else verdict


def print_plots(report: ValidationReport, console: Console, width: int, height: int) -> None:
    """Print the real-versus-generated plot of every feature and observable.

    Where the console prints no colours (a pipe, a file or ``NO_COLOR``), real and generated
    are drawn with different glyphs. Plots wider than the console are printed whole.
    """
    from cmsgen.tui.plots import render_comparison, to_rich_text

    colorless = console.no_color or console.color_system is None
    for histogram in report.histograms():
        # soft_wrap keeps lines whole when the plot is wider than the console (80 columns in a pipe).
        console.print(to_rich_text(render_comparison(histogram, width, height, colorless=colorless)), soft_wrap=True)


def _import_figure_libraries() -> tuple[Any, Any]:
    """Import and return matplotlib.pyplot and mplhep, or raise a ConfigError that gives the install command."""
    from cmsgen.engine.errors import ConfigError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import mplhep
    except ImportError as error:
        raise ConfigError(
            f"--figures needs matplotlib and mplhep, which are not installed ({error.name} is missing); "
            "install them with: pip install 'cmsgen-tui[plots]'"
        ) from None
    return plt, mplhep


def write_figures(report: ValidationReport, directory: Path) -> list[Path]:
    """Write a PNG and a PDF per variable in the CMS style of mplhep and return the files written.

    Needs the ``plots`` extra (matplotlib and mplhep). Without it, a ConfigError gives the install command.
    """
    plt, mplhep = _import_figure_libraries()

    # NOTE: CI installs no matplotlib or mplhep, so tests/test_validate_cli.py skips the test of this path there.
    directory.mkdir(parents=True, exist_ok=True)
    plt.style.use(mplhep.style.CMS)
    written: list[Path] = []
    for histogram in report.histograms():
        figure, (top, bottom) = plt.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)}, figsize=(10, 10)
        )
        mplhep.histplot(histogram.real, histogram.edges, yerr=histogram.real_err, label="real", ax=top)
        mplhep.histplot(histogram.generated, histogram.edges, yerr=histogram.generated_err, label="generated", ax=top)
        top.set_ylabel("normalised events")
        top.legend()
        # The data may come from any run period, so no centre-of-mass energy replaces
        # mplhep's default right-hand label (13 TeV).
        mplhep.cms.label("Open Data", data=True, rlabel="", ax=top)
        mplhep.histplot(histogram.ratio, histogram.edges, yerr=histogram.ratio_err, ax=bottom, color="black")
        bottom.axhline(1.0, color="gray", linestyle="--")
        bottom.set_ylim(0.0, 2.0)
        bottom.set_ylabel("generated / real")
        bottom.set_xlabel(f"{histogram.name} [{histogram.unit}]" if histogram.unit else histogram.name)
        for suffix in ("png", "pdf"):
            path = directory / f"{histogram.name}.{suffix}"
            figure.savefig(path)
            written.append(path)
        plt.close(figure)
    return written


def check_output_file(path: Path, option: str) -> None:
    """Raise ConfigError unless ``path`` can be written: its folder exists and is writable, and it is no folder."""
    from cmsgen.engine.errors import ConfigError

    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{option} {path} is invalid: it is a folder; give a file name such as {path / 'report.md'}")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path} is invalid: folder {folder} does not exist; create it first or choose another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path} is invalid: folder {folder} is not writable; choose another path")


def make_figure_folder(path: Path) -> None:
    """Create the ``--figures`` folder, or raise ConfigError when it cannot be created or written."""
    from cmsgen.engine.errors import ConfigError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"--figures {path} is invalid: the folder cannot be created ({error.strerror}); choose another path"
        ) from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"--figures {path} is invalid: the folder is not writable; choose another path")


def check_options(
    *,
    run: str | None,
    files_form: bool,
    real: list[Path] | None,
    generated: list[Path] | None,
    feature_set: str | None,
    options: dict[str, Any],
    train: list[Path] | None,
    thresholds: dict[str, Any],
    events: int | None,
    seed: int,
    max_events: int | None,
    plots: bool,
    plot_size: tuple[int, int],
) -> None:
    """Raise ConfigError for the first invalid option or combination, before any work starts."""
    from cmsgen.engine.errors import ConfigError
    from cmsgen.engine.validation.report import MIN_EVENTS, check_event_count
    from cmsgen.tui.plots import MIN_HEIGHT, MIN_WIDTH

    if run is not None and files_form:
        raise ConfigError("give either RUN or --real/--generated/--feature-set, not both")
    if run is None and not files_form:
        raise ConfigError("give a RUN to validate, or --real PATH --generated PATH --feature-set NAME")
    if files_form and not (real and generated and feature_set):
        raise ConfigError("the files form needs all of --real PATH, --generated PATH and --feature-set NAME")
    if run is not None and (options or train or thresholds or max_events is not None):
        raise ConfigError(
            "--option, --train, --set and --max-events apply to the files form; a run uses its config's "
            "[validation] table and its own splits"
        )
    if files_form and feature_set:
        _check_feature_set_options(feature_set, options)
    if events is not None and files_form:
        raise ConfigError("--events applies to a RUN; in the files form use --max-events")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed} is invalid: expected an integer from 0 to {MAX_SEED}")
    check_event_count(events)
    if max_events is not None and max_events < MIN_EVENTS:
        raise ConfigError(f"--max-events {max_events} is invalid: expected at least {MIN_EVENTS}")
    width, height = plot_size
    if plots and (width < MIN_WIDTH or height < MIN_HEIGHT):
        raise ConfigError(
            f"--plot-width {width} --plot-height {height} is invalid: a plot needs at least "
            f"{MIN_WIDTH} columns and {MIN_HEIGHT} lines"
        )


def _check_feature_set_options(feature_set: str, options: dict[str, Any]) -> None:
    """Build the feature set once, and name a bad option as the user typed it (``--option n=0``)."""
    import re

    from cmsgen.engine.errors import ConfigError
    from cmsgen.engine.features import get_feature_set

    try:
        get_feature_set(feature_set, **options)
    except ConfigError as error:
        raise ConfigError(re.sub(r"data\.options\.(\w+) = ", r"--option \1=", error.message)) from None


def run_validate(
    run: str | None,
    *,
    runs_dir: Path,
    events: int | None,
    seed: int,
    checkpoint: str,
    real: list[Path] | None,
    generated: list[Path] | None,
    feature_set: str | None,
    options: dict[str, Any],
    train: list[Path] | None,
    thresholds: dict[str, Any],
    max_events: int | None,
    as_json: bool,
    markdown: Path | None,
    plots: bool,
    figures: Path | None,
    plot_size: tuple[int, int],
) -> None:
    """Check every option, run one validation in the run form or the files form, and write the requested outputs."""
    from rich.console import Console

    from cmsgen.engine.errors import ConfigError
    from cmsgen.engine.training.runs import CHECKPOINT_NAMES, RunDirectory
    from cmsgen.engine.validation import validate_run

    stdout = Console()
    stderr = Console(stderr=True)
    files_form = bool(real or generated or feature_set)
    check_options(
        run=run, files_form=files_form, real=real, generated=generated, feature_set=feature_set, options=options,
        train=train, thresholds=thresholds, events=events, seed=seed, max_events=max_events, plots=plots,
        plot_size=plot_size,
    )
    if checkpoint not in CHECKPOINT_NAMES:
        raise ConfigError(f"--checkpoint {checkpoint!r} is invalid: expected one of {', '.join(CHECKPOINT_NAMES)}")
    if markdown is not None:
        check_output_file(markdown, "--markdown")
    if figures is not None:
        _import_figure_libraries()  # Fail before the long validation, not after it.
        make_figure_folder(figures)
    run_path: Path | None = None
    if run is not None:
        from cmsgen.tui.commands.train import resolve_run_path

        run_path = resolve_run_path(run, runs_dir)
        used = RunDirectory(run_path).resolve_checkpoint(checkpoint)
        if used != checkpoint:
            stderr.print(
                f"[yellow]Notice:[/] run {run_path} has no {checkpoint} checkpoint, so the {used} checkpoint is validated.",
                highlight=False,
                soft_wrap=True,
            )

    progress, status = _progress_printer(None if as_json else stderr, live=stderr.is_terminal)
    try:
        if run_path is not None:
            report = validate_run(run_path, n_events=events, seed=seed, progress=progress, checkpoint=checkpoint)
        else:
            assert real is not None
            assert generated is not None
            assert feature_set is not None
            report = validate_files(real, generated, feature_set, options, train, seed, thresholds, max_events, progress)
    finally:
        if status is not None:
            status.stop()

    data = report.to_dict()
    if markdown is not None:
        markdown.write_text(report.to_markdown(), encoding="utf-8")
    written = write_figures(report, figures) if figures is not None else []
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
        sys.stdout.flush()
    else:
        print_summary(data, stdout)
    if plots:
        print_plots(report, stderr if as_json else stdout, *plot_size)
    messages = stderr if as_json else stdout
    if run_path is not None:
        messages.print(f"wrote {run_path / 'validation.json'}")
    if markdown is not None:
        messages.print(f"wrote {markdown}")
    if written:
        messages.print(f"wrote {len(written)} figures to {figures}")


def register(app: typer.Typer) -> None:
    from cmsgen.tui.cli import handle_errors

    @app.command(name="validate")
    @handle_errors
    def validate_command(
        run: Annotated[
            str | None, typer.Argument(help="Run directory, or a run name under --run-dir; leave out for the files form.")
        ] = None,
        events: Annotated[
            int | None,
            typer.Option(
                "--events", "-n", help="Number of events to generate from the run, 20 to 10,000,000 (default: the test split size)."
            ),
        ] = None,
        seed: Annotated[
            int, typer.Option("--seed", help="Seed of every random choice, 0 to 4294967295. Equal seeds give equal reports.")
        ] = 0,
        checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint of the run to sample: best or last.")] = "best",
        runs_dir: Annotated[
            Path, typer.Option("--run-dir", "--runs-dir", help="Directory that contains the run directories.")
        ] = Path("runs"),
        real: Annotated[
            list[Path] | None, typer.Option("--real", help="Real data file, directory or glob. Repeat for several.")
        ] = None,
        generated: Annotated[
            list[Path] | None,
            typer.Option("--generated", help="Generated events (ROOT, Parquet or CSV, e.g. from `generate`). Repeat for several."),
        ] = None,
        feature_set: Annotated[
            str | None, typer.Option("--feature-set", help="Feature set of the files form: dimuon or leading-objects.")
        ] = None,
        option: Annotated[
            list[str] | None,
            typer.Option(
                "--option",
                help="Feature-set option KEY=VALUE, e.g. opposite_charge=true or fields=pt,eta,phi,mass. Repeat for several.",
            ),
        ] = None,
        train: Annotated[
            list[Path] | None,
            typer.Option("--train", help="Training data of the model, for the memorisation check (files form)."),
        ] = None,
        threshold: Annotated[
            list[str] | None,
            typer.Option("--set", help="Validation setting KEY=VALUE, e.g. pass_factor=3 (files form). Repeat for several."),
        ] = None,
        max_events: Annotated[
            int | None,
            typer.Option(
                "--max-events", help="Use at most this many events per dataset, a seeded random subsample (files form)."
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout instead of the table.")] = False,
        markdown: Annotated[
            Path | None, typer.Option("--markdown", help="Also write the report as Markdown to this file.")
        ] = None,
        plots: Annotated[
            bool, typer.Option("--plots", help="Print terminal plots of every feature and observable.")
        ] = False,
        plot_width: Annotated[int, typer.Option("--plot-width", help="Width of each terminal plot, in characters.")] = 80,
        plot_height: Annotated[int, typer.Option("--plot-height", help="Height of each terminal plot, in lines.")] = 24,
        figures: Annotated[
            Path | None,
            typer.Option("--figures", help="Write PNG and PDF figures (CMS style) to this directory; needs the plots extra."),
        ] = None,
    ) -> None:
        """Validate generated against real events: statistics with baselines, physics checks, memorisation."""
        run_validate(
            run,
            runs_dir=runs_dir,
            events=events,
            seed=seed,
            checkpoint=checkpoint,
            real=real,
            generated=generated,
            feature_set=feature_set,
            options=parse_assignments(option, "--option"),
            train=train,
            thresholds=parse_assignments(threshold, "--set"),
            max_events=max_events,
            as_json=as_json,
            markdown=markdown,
            plots=plots,
            figures=figures,
            plot_size=(plot_width, plot_height),
        )
