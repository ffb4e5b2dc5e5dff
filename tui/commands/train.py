"""``cmsgen-tui train CONFIG``: train a model in a new run directory, or resume one.

With a terminal on stdout, progress is a rich progress bar with the latest losses. Otherwise
(a pipe, a batch job, the TUI's subprocess) it is one plain line per logged step and epoch.

``--nproc N`` trains with N data-parallel ranks on this node, and the same command started by
``torchrun`` joins torchrun's process group. Rank 0 alone prints progress and the result.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

    from cmsgen.engine.training.trainer import Progress

log = logging.getLogger(__name__)

# Loss keys shown in progress output, in this order, when the model reports them.
SHOWN_LOSSES = ("loss", "loss_critic", "loss_generator", "nll", "reconstruction", "kl", "mmd")


def format_losses(record: dict[str, Any]) -> str:
    """Return the losses of a metrics record as ``name value`` pairs, for example ``loss 1.234``.

    The GAN's ``loss`` is its ``loss_critic``, so a record with ``loss_critic`` shows that name alone.
    """
    names = [name for name in SHOWN_LOSSES if isinstance(record.get(name), (int, float))]
    if "loss_critic" in names and "loss" in names:
        names.remove("loss")
    parts = [f"{name} {record[name]:.4g}" for name in names]
    w1 = record.get("w1_mass")
    if isinstance(w1, (int, float)):
        parts.append(f"w1_mass {w1:.4g} GeV")
    return "  ".join(parts)


def current_epoch(kind: str, record: dict[str, Any], status: dict[str, Any]) -> int:
    """Return the 1-based number of the epoch that a progress update belongs to.

    Records and status count completed epochs. A "step" or "start" update belongs to the next
    epoch, and an "epoch" update to the epoch that has just completed.
    """
    completed = record.get("epoch", status.get("epoch", 0))
    completed = completed if isinstance(completed, int) else 0
    if kind == "epoch":
        return completed
    total = status.get("total_epochs")
    number = completed + 1
    return min(number, total) if isinstance(total, int) else number


def _count(number: Any, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


class PlainReporter:
    """Progress as plain lines on stdout, one per logged step and one per epoch."""

    def __init__(self) -> None:
        self.load_decile = -1

    def __call__(self, progress: Progress) -> None:
        status, record = progress.status, progress.record
        if progress.kind == "load":
            # One line per tenth of the data, so that a large dataset does not flood a log.
            decile = int(record["fraction"] * 10)
            if decile > self.load_decile:
                self.load_decile = decile
                typer.echo(f"reading features: {record['fraction']:.0%} ({record['message']})")
        elif progress.kind == "start":
            for warning in record.get("warnings", []):
                typer.echo(f"warning: {warning}.", err=True)
            typer.echo(
                f"training {status.get('model')} on {status.get('feature_set')} in run {status.get('name')}: "
                f"{_count(status.get('total_steps'), 'step')}, {_count(status.get('total_epochs'), 'epoch')}",
            )
        elif progress.kind in ("step", "epoch"):
            rate = record.get("events_per_second")
            rate_text = f"  {rate:.0f} events/s" if isinstance(rate, (int, float)) else ""
            typer.echo(
                f"step {record['step']}/{status.get('total_steps')}  "
                f"epoch {current_epoch(progress.kind, record, status)}/{status.get('total_epochs')}  "
                f"{format_losses(record)}{rate_text}"
            )
        sys.stdout.flush()


class RichReporter:
    """Progress as a rich progress bar that shows the latest losses.

    In a narrow terminal the losses are cut first and the bar shrinks next, so the epoch, the step
    count and the remaining time stay whole.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Column
        from rich.text import Text

        class OneLineTextColumn(TextColumn):
            """Text on one line, cut with an ellipsis when the column is narrow."""

            def render(self, task: Any) -> Text:
                text = super().render(task)
                text.no_wrap = True
                text.overflow = "ellipsis"
                return text

        def whole() -> Column:
            # rich's table shrinks only the columns that may wrap, so these keep their width.
            return Column(no_wrap=True, overflow="ignore")

        self.bar: RichProgress = Progress(
            TextColumn("[bold]{task.fields[epoch]}", table_column=whole()),
            BarColumn(bar_width=20),
            MofNCompleteColumn(table_column=whole()),
            TimeRemainingColumn(table_column=whole()),
            OneLineTextColumn("{task.fields[losses]}", table_column=Column()),
            console=console,
        )
        self.task: Any = None
        self.load_task: Any = None

    def __call__(self, progress: Progress) -> None:
        status, record = progress.status, progress.record
        if progress.kind == "load":
            if self.load_task is None:
                self.bar.start()
                self.load_task = self.bar.add_task("load", total=100, epoch="reading features", losses="")
            self.bar.update(self.load_task, completed=round(100 * record["fraction"]), losses=record["message"])
            return
        if progress.kind == "start":
            if self.load_task is not None:
                self.bar.remove_task(self.load_task)
                self.load_task = None
            self.bar.start()
            from rich.markup import escape

            for warning in record.get("warnings", []):
                self.bar.console.print(f"[yellow]warning:[/] {escape(warning)}.", highlight=False)
            self.task = self.bar.add_task(
                "train",
                total=status.get("total_steps") or None,
                completed=status.get("step", 0),
                epoch=self._epoch_text(current_epoch("start", {}, status), status),
                losses="",
            )
            return
        if self.task is None:
            return
        if progress.kind in ("step", "epoch"):
            epoch_text = self._epoch_text(current_epoch(progress.kind, record, status), status)
            self.bar.update(self.task, completed=record["step"], epoch=epoch_text, losses=format_losses(record))
        if progress.kind == "epoch":
            self.bar.console.print(f"epoch {record.get('epoch')}: {format_losses(record)}")
        if progress.kind == "end":
            self.bar.update(self.task, completed=status.get("step", 0))
            self.close()

    def close(self) -> None:
        """Stop the live display (idempotent)."""
        self.bar.stop()

    @staticmethod
    def _epoch_text(epoch: int, status: dict[str, Any]) -> str:
        return f"epoch {epoch}/{status.get('total_epochs', '?')}"


def resolve_run_path(run: str, runs_dir: Path) -> Path:
    """Return the folder of ``run``: a path to a run directory, or a run name under ``runs_dir``.

    Raises:
        ConfigError: The run stopped before training started, so it has no config.toml or checkpoint.
        DataNotFoundError: Neither path is a run directory.
    """
    from cmsgen.engine.errors import ConfigError, DataNotFoundError
    from cmsgen.engine.training.runs import RunDirectory

    candidate = Path(run).expanduser()
    named = runs_dir.expanduser() / run
    for folder in (candidate, named):
        if (folder / "config.toml").is_file():
            return folder
    for folder in (candidate, named):
        if (folder / "status.json").is_file():
            status = RunDirectory(folder).status()
            raise ConfigError(
                f"run {folder} has no checkpoint, because it ended before training started "
                f"(state {status.get('state')}). Start a new run with its config file."
            )
    raise DataNotFoundError(
        f"run {run!r} not found: neither {candidate} nor {named} is a run directory. "
        "List runs with `cmsgen-tui runs`."
    )


def run_training(
    config_path: Path | None,
    *,
    data: list[Path] | None,
    runs_dir: Path,
    name: str | None,
    resume: str | None,
    device: str | None,
    epochs: int | None,
    nproc: int | None = None,
    dask: str | None = None,
    layout_files: list[Path] | None = None,
) -> int:
    """Start or resume a run and return the exit code (0 finished, 130 stopped).

    With ``nproc`` > 1, start that many ranks on this node. Under torchrun (``WORLD_SIZE`` set),
    join its process group. Otherwise train in this process.
    """
    from cmsgen.engine.errors import CmsgenError
    from cmsgen.engine.training import distributed

    request = {
        "config_path": config_path,
        "data": data,
        "runs_dir": runs_dir,
        "name": name,
        "resume": resume,
        "device": device,
        "epochs": epochs,
        "dask": dask,
        "layout_files": layout_files,
    }
    if nproc is not None:
        return _launch_ranks(nproc, request)

    context = distributed.init_from_environment()
    if context is None:
        return _train(**request, context=None)
    try:
        return _train(**request, context=context)
    except CmsgenError as error:
        if context.is_main:
            raise
        # Rank 0 reports the error, so the other ranks only log it.
        log.error("rank %d stopped: %s", context.rank, error.message)
        return error.exit_code
    finally:
        distributed.destroy(context)


def train_rank(request: dict[str, Any]) -> dict[str, Any]:
    """Train as one rank started by ``--nproc`` and return ``{"exit_code": ...}``."""
    from cmsgen.engine.logs import setup_file_logging

    setup_file_logging()
    return {"exit_code": run_training(**request)}


def _launch_ranks(nproc: int, request: dict[str, Any]) -> int:
    """Start ``nproc`` ranks of ``train_rank`` on this node and return rank 0's exit code.

    Raises:
        ConfigError: ``nproc`` is invalid, this process is already a rank, or the batch does not
            split into ``nproc`` equal shares.
        CmsgenError: Rank 0's error, with its exit code.
    """
    from cmsgen.engine.errors import EXIT_INTERRUPTED, CmsgenError, ConfigError, RunFailedError
    from cmsgen.engine.logs import log_path
    from cmsgen.engine.training import distributed
    from cmsgen.engine.training.config import load_config

    if nproc < 1:
        raise ConfigError(f"--nproc {nproc} is invalid: expected an integer >= 1")
    if distributed.environment_world_size() is not None:
        raise ConfigError("--nproc is invalid under torchrun, which starts the ranks itself. Leave out --nproc.")
    if nproc == 1:
        return run_training(**request)
    if request["resume"] is None and request["config_path"] is not None:
        # Check the batch and the Dask scheduler before any process starts. A resumed run's
        # config is checked by rank 0.
        config = load_config(request["config_path"])
        distributed.check_global_batch(config.training.batch_size, nproc)
        address = request["dask"] or config.data.dask
        if address not in (None, "local"):
            from cmsgen.engine.sources.partitions import dask_client

            with dask_client(address):
                log.info("connected to the Dask scheduler at %s before starting the ranks", address)

    launch = distributed.launch_local(nproc, train_rank, request)
    crashed = [rank for rank in range(nproc) if rank not in launch.outcomes]
    if crashed and launch.signal is None:
        # A rank that crashed or was killed reports nothing, and the others then fail on the lost connection.
        raise RunFailedError(
            f"rank {crashed[0]} of {nproc} crashed or was killed, so training stopped and the last checkpoint is kept. "
            f"The details are in {log_path()}."
        )
    main = launch.outcomes.get(0)
    if main is None:
        log.warning("training stopped by %s before rank 0 reported its result", launch.signal)
        return EXIT_INTERRUPTED
    # Rank 0's outcome comes first. Another rank's error is reported only when rank 0 finished.
    if "message" in main:
        raise CmsgenError(main["message"], exit_code=main["exit_code"])
    errors = [outcome for _, outcome in sorted(launch.outcomes.items()) if "message" in outcome]
    if main["exit_code"] == 0 and errors:
        raise CmsgenError(errors[0]["message"], exit_code=errors[0]["exit_code"])
    return int(main["exit_code"])


def _train(
    config_path: Path | None,
    *,
    data: list[Path] | None,
    runs_dir: Path,
    name: str | None,
    resume: str | None,
    device: str | None,
    epochs: int | None,
    dask: str | None,
    context: Any,
    layout_files: list[Path] | None = None,
) -> int:
    from cmsgen.engine.errors import EXIT_INTERRUPTED, CmsgenError, ConfigError
    from cmsgen.engine.training.config import DEVICES, load_config
    from cmsgen.engine.training.trainer import resolve_device, resume_run, start_run

    if device is not None and context is None:
        if device not in DEVICES:
            raise ConfigError(f"--device {device!r} is invalid: expected one of {', '.join(DEVICES)}")
        resolve_device(device, option="--device")

    is_main = context is None or context.is_main
    interactive = sys.stdout.isatty()
    reporter: PlainReporter | RichReporter | None = None
    if is_main:
        reporter = RichReporter() if interactive else PlainReporter()
    try:
        if resume is not None:
            if config_path is not None or data or dask or layout_files:
                raise ConfigError(
                    "--resume continues a run with its stored config. "
                    "Leave out CONFIG, --data, --layout-file, --dask and --scheduler."
                )
            trainer = resume_run(
                resolve_run_path(resume, runs_dir), epochs=epochs, device=device, callback=reporter, distributed=context
            )
        else:
            if config_path is None:
                raise ConfigError("training config file is missing. Give one (see sample_configs/), or use --resume RUN.")
            config = load_config(config_path).with_overrides(
                paths=[str(p) for p in data] if data else None,
                device=device,
                epochs=epochs,
                dask=dask,
                layout_files=[str(p) for p in layout_files] if layout_files else None,
            )
            trainer = start_run(config, runs_dir=runs_dir, name=name, callback=reporter, distributed=context)
        try:
            result = trainer.run()
        except KeyboardInterrupt:
            # Print the message written to status.json, not a bare "Interrupted.".
            if isinstance(reporter, RichReporter):
                reporter.close()
            raise CmsgenError(trainer.interrupt_message or "interrupted", exit_code=EXIT_INTERRUPTED) from None
    finally:
        if isinstance(reporter, RichReporter):
            reporter.close()

    if is_main:
        typer.echo(result.message)
        typer.echo(f"run directory: {result.run.path}")
        if result.best_metric is not None:
            typer.echo(f"best w1_mass: {result.best_metric:.4g} GeV")
    return EXIT_INTERRUPTED if result.state == "stopped" else 0


def register(app: typer.Typer) -> None:
    from cmsgen.tui.cli import handle_errors

    @app.command(name="train")
    @handle_errors
    def train_command(
        config: Annotated[
            Path | None,
            typer.Argument(help="TOML training config (see sample_configs/). Not needed with --resume."),
        ] = None,
        data: Annotated[
            list[Path] | None,
            typer.Option("--data", help="Data file, directory or glob that replaces data.paths. Repeat for several."),
        ] = None,
        runs_dir: Annotated[
            Path, typer.Option("--run-dir", "--runs-dir", help="Directory that contains the run directories.")
        ] = Path("runs"),
        name: Annotated[
            str | None, typer.Option("--name", help="Name of the new run directory (default: model-features-time).")
        ] = None,
        resume: Annotated[
            str | None,
            typer.Option("--resume", help="Continue this run (a path or a name under --run-dir) from its last checkpoint."),
        ] = None,
        device: Annotated[
            str | None, typer.Option("--device", help="Device: auto, cpu, cuda or mps (replaces training.device).")
        ] = None,
        epochs: Annotated[
            int | None, typer.Option("--epochs", help="Number of epochs in total (replaces training.epochs).")
        ] = None,
        nproc: Annotated[
            int | None,
            typer.Option(
                "--nproc",
                help="Number of data-parallel ranks to start on this node (one per GPU, or CPU processes with gloo). "
                "training.batch_size stays the global batch and must be a multiple of it. Leave out under torchrun.",
            ),
        ] = None,
        dask: Annotated[
            bool,
            typer.Option("--dask", help="Read the training features on a new local Dask cluster (replaces data.dask)."),
        ] = False,
        layout_file: Annotated[
            list[Path] | None,
            typer.Option(
                "--layout-file",
                metavar="FILE",
                help="Extra layout TOML file to consider when the layout of the data is detected "
                "(replaces data.layout_file). Repeat for several.",
            ),
        ] = None,
        scheduler: Annotated[
            str | None,
            typer.Option(
                "--scheduler",
                metavar="ADDRESS",
                help="Read the training features on the Dask scheduler at ADDRESS (tcp://host:port); implies --dask.",
            ),
        ] = None,
    ) -> None:
        """Train a GAN, VAE or flow on real events. SIGINT or SIGTERM stops training after saving a checkpoint."""
        code = run_training(
            config,
            data=data,
            runs_dir=runs_dir,
            name=name,
            resume=resume,
            device=device,
            epochs=epochs,
            nproc=nproc,
            dask=scheduler or ("local" if dask else None),
            layout_files=layout_file,
        )
        if code:
            raise typer.Exit(code)
