"""``cmsgen-tui demo``: the main job on the project's synthetic sample, in the app or headless.

The sample (``cmsgen.engine.sample.write_sample``) is written once into
``<cache dir>/sample``. Without ``--headless`` the demo then opens the app on
the sample's layout folders, one dataset each. With it, the demo builds the missing-field report, trains a small
VAE for a few epochs, validates it and prints a summary of each step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

log = logging.getLogger(__name__)

DEMO_EVENTS = 20_000
DEMO_EPOCHS = 5
DEMO_LAYOUT = "csv_pairs"  # the sample folder that the demo trains on
VALIDATION_EVENTS = 2_000
# Same as cmsgen.engine.sample.MANIFEST_NAME, which the sample writer saves last, so
# that it marks a complete sample. Importing that module here would load uproot,
# awkward and pyarrow before the app's first paint.
SAMPLE_MANIFEST = "manifest.json"


def ensure_sample(cache_dir: Path, n_events: int) -> Path:
    """Write the synthetic sample into ``cache_dir/sample`` unless its manifest exists, and return that folder.

    The sample writer is imported only when the sample must be written.
    """
    sample_dir = cache_dir / "sample"
    if (sample_dir / SAMPLE_MANIFEST).is_file():
        typer.echo(f"sample: reusing {sample_dir}")
        return sample_dir

    from cmsgen.engine.sample import write_sample

    typer.echo(f"sample: writing {n_events:,} synthetic dimuon events to {sample_dir}")
    manifest = write_sample(sample_dir, n_events=n_events, seed=0)
    typer.echo(f"sample: {len(manifest.to_dict().get('files', []))} files written")
    return sample_dir


def sample_datasets(sample_dir: Path) -> list[Path]:
    """Return the layout folders of the sample, one dataset each, in the order of its manifest.

    The layouts are separate datasets because a report over all of them would
    merge three layouts. A manifest without a readable "layouts" list gives the
    sample folder itself as the one dataset.
    """
    try:
        layouts = json.loads((sample_dir / SAMPLE_MANIFEST).read_text(encoding="utf-8"))["layouts"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("the layouts of the sample %s cannot be read from its manifest (%s); opening the folder as one dataset", sample_dir, error)
        return [sample_dir]
    folders = [sample_dir / str(layout) for layout in layouts if (sample_dir / str(layout)).is_dir()]
    return folders or [sample_dir]


def demo_config(data_dir: Path, epochs: int) -> Any:
    """Return the validated training config of the demo: a small VAE on the dimuon features."""
    from cmsgen.engine.training.config import parse_config

    table = {
        "data": {"paths": [str(data_dir)], "feature_set": "dimuon", "options": {"opposite_charge": True}},
        "model": {"family": "vae", "latent_dim": 8, "encoder_features": [64, 64], "decoder_features": [64, 64]},
        "training": {"epochs": epochs, "batch_size": 256, "lr": 1e-3, "seed": 0, "device": "cpu", "log_every": 20, "metric_events": 2000},
    }
    return parse_config(table, base_dir=data_dir)


def print_report(data_dir: Path) -> None:
    """Build the missing-field report of ``data_dir`` and print its main findings."""
    from cmsgen.engine.report import build_report

    report = build_report([data_dir]).to_dict()
    typer.echo(f"report: {report['n_events']:,} events, layout {report['layout']['name']}")
    missing = [f"{row['collection']}.{row['field']}" for row in report["fields"] if row["status"] == "missing"]
    typer.echo(f"report: missing fields: {', '.join(missing) or 'none'}")
    for row in report["quality"]:
        problems = {key: row[key] for key in ("null", "nan", "inf", "sentinel", "out_of_range") if row.get(key)}
        if problems:
            typer.echo(f"report: {row['collection']}.{row['field']}: {problems}")
    typer.echo(f"report: {report['duplicates']['n_duplicates']} duplicate events, {len(report['unreadable'])} unreadable branches")
    for verdict in report["verdict"]:
        mark = "trainable" if verdict["trainable"] else "not trainable"
        typer.echo(f"report: {verdict['feature_set']}: {mark} ({verdict['n_events']:,} events)")


def train_demo(data_dir: Path, runs_dir: Path, epochs: int) -> Path:
    """Train the demo VAE on ``data_dir``, print one line per epoch and return the run directory."""
    from cmsgen.engine.training.trainer import start_run

    config = demo_config(data_dir, epochs)
    name = f"demo-vae-{time.strftime('%Y%m%d-%H%M%S')}"
    last_epoch = [-1]

    def report_progress(progress: Any) -> None:
        record = progress.record or {}
        if progress.kind == "epoch" and record.get("epoch") != last_epoch[0]:
            last_epoch[0] = record.get("epoch")
            w1 = record.get("w1_mass")
            w1_text = f", w1_mass {w1:.3g} GeV" if isinstance(w1, (int, float)) else ""
            typer.echo(f"train: epoch {progress.status.get('epoch')}/{progress.status.get('total_epochs')}, loss {record.get('loss', float('nan')):.4g}{w1_text}")

    trainer = start_run(config, runs_dir=runs_dir, name=name, callback=report_progress)
    typer.echo(f"train: VAE for {epochs} epochs in {trainer.run_dir.path}")
    result = trainer.run()
    best = f"{result.best_metric:.4g} GeV" if isinstance(result.best_metric, (int, float)) else "none"
    typer.echo(f"train: {result.state} after {result.step} steps, best w1_mass {best}")
    return result.run.path


def validate_demo(run_dir: Path, n_events: int) -> str:
    """Validate the run on ``n_events`` generated events, print the W1 rows and return the verdict."""
    from cmsgen.engine.validation.report import validate_run
    from cmsgen.engine.validation.summary import summary_rows

    report = validate_run(run_dir, n_events=n_events, seed=0).to_dict()
    summary = report["summary"]
    typer.echo(f"validate: {summary['pass']} pass, {summary['warn']} warn, {summary['fail']} fail; verdict {summary['verdict']}")
    for row in summary_rows(report):
        if row["section"] == "univariate" and row["figure"] == "W1":
            typer.echo(f"validate: {row['variable']}: W1 {row['value']} (real-vs-real {row['baseline']}) {row['verdict']}")
    typer.echo(f"validate: wrote {run_dir / 'validation.json'}")
    return str(summary["verdict"])


def run_demo(headless: bool, runs_dir: Path, cache_dir: Path, events: int, epochs: int) -> None:
    """Check the options, write the sample if needed, then open the app or run the headless steps."""
    from cmsgen.engine.errors import ConfigError

    if events < 1000:
        raise ConfigError(f"--events {events} is invalid: the demo needs at least 1000 events")
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs} is invalid: expected at least 1")
    if not headless:
        from cmsgen.tui.commands.app import require_terminal

        require_terminal()
    sample_dir = ensure_sample(cache_dir, events)
    if not headless:
        from cmsgen.tui.app import CmsgenApp

        CmsgenApp(sample_datasets(sample_dir), runs_dir).run()
        return
    data_dir = sample_dir / DEMO_LAYOUT
    print_report(data_dir)
    run_dir = train_demo(data_dir, runs_dir, epochs)
    validate_demo(run_dir, VALIDATION_EVENTS)
    folders = " ".join(str(folder) for folder in sample_datasets(sample_dir))
    typer.echo(f"demo: done. Open the app on it with: cmsgen-tui {folders} --runs-dir {runs_dir}")


def register(app: typer.Typer) -> None:
    from cmsgen.tui.cli import handle_errors

    @app.command(name="demo")
    @handle_errors
    def demo(
        headless: Annotated[bool, typer.Option("--headless", help="Run the sample, report, training and validation steps without the app and print a summary of each.")] = False,
        runs_dir: Annotated[Path, typer.Option("--runs-dir", "--run-dir", help="Directory of training runs.")] = Path("runs"),
        cache_dir: Annotated[
            Path | None, typer.Option("--cache-dir", help="Folder for the synthetic sample (default: the user cache of cmsgen-tui).")
        ] = None,
        events: Annotated[int, typer.Option("--events", help="Number of events in the synthetic sample, which is written once (at least 1000).")] = DEMO_EVENTS,
        epochs: Annotated[int, typer.Option("--epochs", help="Training epochs of the headless demo (at least 1).")] = DEMO_EPOCHS,
    ) -> None:
        """Write the synthetic sample once, then open the app on it (or run the main job headless)."""
        from cmsgen.engine.logs import cache_dir as default_cache_dir

        run_demo(headless, runs_dir, cache_dir or default_cache_dir(), events, epochs)
