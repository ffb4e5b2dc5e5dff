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
the JSON. The progress line always goes to stderr, and only when stderr is a
terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from cmsgen.engine.validation.report import ValidationReport

VERDICT_STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def parse_assignments(values: list[str] | None, option: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options into a dict.

    A value becomes a bool (``true``/``false`` in any case), an int or a float
    when it parses as one, and stays a string otherwise.
    """
    from cmsgen.engine.errors import ConfigError

    result: dict[str, Any] = {}
    for item in values or []:
        key, separator, text = item.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{option} {item!r} is invalid: expected KEY=VALUE, for example {option} bins=40")
        result[key.strip()] = _parse_value(text.strip())
    return result


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _progress_printer(console: Console | None) -> tuple[Any, Any]:
    """Start a one-line rich status on ``console`` and return (progress callback, status).

    Returns (None, None) when ``console`` is None.
    """
    if console is None:
        return None, None
    status = console.status("validating…")
    status.start()

    def progress(fraction: float, message: str) -> None:
        status.update(f"{fraction:4.0%} {message}")

    return progress, status


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
    """Read both datasets, and the training data if given, with ``load_features`` and validate them."""
    from cmsgen.engine.features import get_feature_set, load_features
    from cmsgen.engine.validation import validate_arrays

    fs = get_feature_set(feature_set, **options)
    real_table = load_features([str(p) for p in real], fs, max_events=max_events)
    generated_table = load_features([str(p) for p in generated], fs, max_events=max_events)
    train_values = load_features([str(p) for p in train], fs).values if train else None
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
    return report


def print_summary(report: dict[str, Any], console: Console) -> None:
    """Print the pass/warn/fail table of a report dict and a summary line."""
    from rich.table import Table

    from cmsgen.engine.validation.report import summary_rows

    inputs = report["inputs"]
    title = f"Validation of {inputs.get('run') or 'generated events'} ({inputs['feature_set']}): "
    title += f"{inputs['n_generated']} generated vs {inputs['n_real']} real events"
    table = Table(title=title, caption="baseline: the same figure on two random halves of the real events")
    for column in ("section", "variable", "figure", "generated vs real", "baseline", "verdict"):
        table.add_column(column, overflow="fold")
    for row in summary_rows(report):
        verdict = row["verdict"]
        table.add_row(
            row["section"],
            row["variable"],
            row["figure"],
            row["value"],
            row["baseline"],
            f"[{VERDICT_STYLES.get(verdict, '')}]{verdict}[/]",
        )
    console.print(table)
    summary = report["summary"]
    style = VERDICT_STYLES.get(summary["verdict"], "")
    console.print(
        f"verdict: [{style}]{summary['verdict']}[/] ({summary['pass']} pass, {summary['warn']} warn, "
        f"{summary['fail']} fail, {summary['skipped']} skipped)"
    )
    console.print(f"memorisation: {report['memorisation'].get('reason', 'skipped')}")


def print_plots(report: ValidationReport, console: Console, width: int, height: int) -> None:
    """Print the real-versus-generated plot of every feature and observable."""
    from cmsgen.tui.plots import render_comparison, to_rich_text

    for histogram in report.histograms():
        console.print(to_rich_text(render_comparison(histogram, width, height)))


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
    """Run one validation, in the run form or the files form, and write the requested outputs."""
    from rich.console import Console

    from cmsgen.engine.errors import ConfigError
    from cmsgen.engine.validation import validate_run

    stdout = Console()
    stderr = Console(stderr=True)
    files_form = bool(real or generated or feature_set)
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
    if events is not None and files_form:
        raise ConfigError("--events applies to a RUN; in the files form use --max-events")

    if figures is not None:
        _import_figure_libraries()  # Fail before the long validation, not after it.
    run_path: Path | None = None
    if run is not None:
        from cmsgen.tui.commands.train import resolve_run_path

        run_path = resolve_run_path(run, runs_dir)

    progress, status = _progress_printer(stderr if stderr.is_terminal else None)
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
            typer.Option("--events", "-n", help="Number of events to generate from the run (default: the test split size)."),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice. Equal seeds give equal reports.")] = 0,
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
            typer.Option("--option", help="Feature-set option KEY=VALUE, e.g. opposite_charge=true. Repeat for several."),
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
            int | None, typer.Option("--max-events", help="Read at most this many events per dataset (files form).")
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
