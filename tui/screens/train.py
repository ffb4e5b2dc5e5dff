"""The Train screen: pick a config and the data, edit the main settings, start, stop and resume runs.

A run is a detached process (``python -m cmsgen.tui train ...`` in a new
session), so closing the app or losing the SSH connection does not stop it. The
screen communicates with the run only through its directory (``status.json``,
``metrics.jsonl``) and signals. Stop sends SIGTERM, and the trainer then
finishes the step and writes a checkpoint and the state "stopped".
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select

from cmsgen.tui.widgets.metrics_tail import read_status
from cmsgen.tui.widgets.run_monitor import RunMonitor, process_alive

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
# Output of the training process, in its run directory.
PROCESS_LOG = "train-process.log"
# The config as edited in the form, written into the new run directory before the
# trainer starts; the trainer accepts a named directory that has no status.json yet.
REQUESTED_CONFIG = "requested-config.toml"


def find_sample_configs() -> list[Path]:
    """Return the TOML files of ``sample_configs/`` in the current directory and in the source checkout."""
    candidates = [Path.cwd() / "sample_configs", Path(__file__).resolve().parents[2] / "sample_configs"]
    configs: dict[Path, None] = {}
    for folder in candidates:
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                configs[path.resolve()] = None
    return list(configs)


@dataclass(frozen=True)
class TrainSettings:
    """Validated settings from the form of the Train screen."""

    config: Path
    data: tuple[str, ...]
    epochs: int | None
    batch_size: int | None
    lr: float | None
    device: str | None
    name: str


class SettingsError(ValueError):
    """Error for an invalid value in the form. The message names the field and the fix."""


def parse_optional(text: str, kind: type, field: str, minimum: float) -> Any:
    """Parse a number typed in a form field, or return None for an empty field, which keeps the config's value.

    Values below ``minimum`` are rejected, and a float must also be greater than 0.
    """
    text = text.strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{field} {text!r} is not a valid {kind.__name__}. Type a number or leave the field empty.") from None
    if kind is float and not math.isfinite(value):
        raise SettingsError(f"{field} {text!r} is not a finite number. Type a number such as 0.001.")
    if value < minimum or (kind is float and value <= 0):
        if kind is float:
            requirement = "greater than 0"
        else:
            requirement = f"at least {minimum}"
        raise SettingsError(f"{field} {text!r} must be {requirement}.")
    return value


def unique_run_name(runs_dir: Path, stem: str) -> str:
    """Return ``stem``, or ``stem-2``, ``stem-3`` and so on when that name already exists in ``runs_dir``."""
    name = stem
    counter = 2
    while (runs_dir / name).exists():
        name = f"{stem}-{counter}"
        counter += 1
    return name


def write_requested_config(settings: TrainSettings, run_dir: Path) -> Path:
    """Apply the form edits to the config, validate it and write it into the new ``run_dir``.

    Return the path of the written file. Raise ``ConfigError`` (from the engine)
    for an invalid config file or value.
    """
    from cmsgen.engine.training.config import dumps_toml, load_config, parse_config

    config = load_config(settings.config)
    table = config.to_dict()
    if settings.data:
        table["data"]["paths"] = [str(Path(path).expanduser().resolve()) for path in settings.data]
    overrides = {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr, "device": settings.device}
    table["training"].update({key: value for key, value in overrides.items() if value is not None})
    parse_config(table, base_dir=settings.config.resolve().parent)  # raises ConfigError for an invalid value
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / REQUESTED_CONFIG
    path.write_text(dumps_toml(table), encoding="utf-8")
    return path


def launch_training(arguments: list[str], output_path: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m cmsgen.tui train ARGUMENTS`` in a new session and append its output to ``output_path``."""
    command = [sys.executable, "-m", "cmsgen.tui", "train", *arguments]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("ab") as output:
        output.write(f"\n$ {shlex.join(command)}\n".encode())
        output.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info("started training process %d: %s", process.pid, shlex.join(command))
    return process


def tail_text(path: Path, lines: int = 6) -> str:
    """Return the last ``lines`` lines of a text file, or an empty string when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class TrainScreen(Screen[None]):
    """Screen that starts training runs and shows their losses, throughput, ETA and physics metric live."""

    TITLE = "Train"
    CSS_PATH = "train.tcss"
    AUTO_FOCUS = None
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("m", "toggle_smoothing", "Smooth"),
        Binding("y", "toggle_log_scale", "Log y"),
        Binding("c", "focus_field('train-config-path')", "Config path", show=False),
        Binding("d", "focus_field('train-data')", "Data paths", show=False),
        Binding("e", "focus_field('train-epochs')", "Epochs", show=False),
        Binding("b", "focus_field('train-batch')", "Batch size", show=False),
        Binding("l", "focus_field('train-lr')", "Learning rate", show=False),
        Binding("escape", "leave_form", "Leave form", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.process: subprocess.Popen[bytes] | None = None
        self.process_output: Path | None = None
        self.smooth = False
        self.logy = False
        self._reported_exit = False

    def compose(self) -> ComposeResult:
        configs = find_sample_configs()
        yield Header()
        with Vertical(id="train-form"):
            with Horizontal(classes="form-row"):
                yield Label("Config", classes="form-label")
                yield Select(
                    [(path.name, str(path)) for path in configs],
                    prompt="sample config",
                    allow_blank=True,
                    value=str(configs[0]) if configs else Select.NULL,
                    compact=True,
                    id="train-config-choice",
                )
                yield Input(placeholder="or a config path", compact=True, id="train-config-path")
            with Horizontal(classes="form-row"):
                yield Label("Data", classes="form-label")
                yield Input(
                    shlex.join(str(path) for path in self.app.dataset_paths),  # type: ignore[attr-defined]
                    placeholder="data paths (empty: the config's)",
                    compact=True,
                    id="train-data",
                )
            with Horizontal(classes="form-row"):
                yield Label("Epochs", classes="form-label")
                yield Input(placeholder="config", compact=True, id="train-epochs", classes="number")
                yield Label("Batch", classes="form-label-short")
                yield Input(placeholder="config", compact=True, id="train-batch", classes="number")
                yield Label("LR", classes="form-label-short")
                yield Input(placeholder="config", compact=True, id="train-lr", classes="number")
                yield Label("Device", classes="form-label-short")
                yield Select([(device, device) for device in DEVICES], value="auto", allow_blank=False, compact=True, id="train-device")
        yield RunMonitor(id="train-monitor")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._check_process)

    def on_screen_resume(self) -> None:
        current = getattr(self.app, "current_run", None)
        monitor = self.query_one(RunMonitor)
        if current is not None and monitor.run_dir != current:
            monitor.attach(current)

    def use_run(self, run_dir: Path) -> None:
        """Attach the monitor to ``run_dir`` (a run started here, headless, or before the app opened)."""
        self.app.current_run = run_dir  # type: ignore[attr-defined]
        self.query_one(RunMonitor).attach(run_dir)

    def action_focus_field(self, field_id: str) -> None:
        self.query_one(f"#{field_id}").focus()

    def action_leave_form(self) -> None:
        self.set_focus(None)

    def action_toggle_smoothing(self) -> None:
        self.smooth = not self.smooth
        self.query_one(RunMonitor).set_smoothing(self.smooth)
        self.notify(f"Smoothing {'on' if self.smooth else 'off'}", timeout=2)

    def action_toggle_log_scale(self) -> None:
        self.logy = not self.logy
        self.query_one(RunMonitor).set_log_scale(self.logy)
        self.notify(f"Log scale {'on' if self.logy else 'off'}", timeout=2)

    @on(Select.Changed, "#train-config-choice")
    def _config_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self.query_one("#train-config-path", Input).value = ""

    def read_settings(self) -> TrainSettings:
        """Return the validated form values, or raise ``SettingsError`` naming the invalid field."""
        typed = self.query_one("#train-config-path", Input).value.strip()
        chosen = self.query_one("#train-config-choice", Select).value
        if typed:
            config = Path(typed).expanduser()
        elif chosen is not Select.NULL:
            config = Path(str(chosen))
        else:
            raise SettingsError("no config chosen. Pick a sample config or type the path of a TOML config.")
        if not config.is_file():
            raise SettingsError(f"config file {config} not found. Type the path of an existing TOML config.")
        try:
            data = tuple(shlex.split(self.query_one("#train-data", Input).value))
        except ValueError as error:
            raise SettingsError(f"the data paths cannot be split ({error}). Quote paths that contain spaces.") from None
        for path in data:
            if not Path(path).expanduser().exists():
                raise SettingsError(f"data path {path} not found. Type existing files or directories, or leave the field empty.")
        device = self.query_one("#train-device", Select).value
        return TrainSettings(
            config=config,
            data=data,
            epochs=parse_optional(self.query_one("#train-epochs", Input).value, int, "epochs", 1),
            batch_size=parse_optional(self.query_one("#train-batch", Input).value, int, "batch size", 1),
            lr=parse_optional(self.query_one("#train-lr", Input).value, float, "learning rate", 0.0),
            device=None if device in (Select.NULL, "auto") else str(device),
            name=unique_run_name(self.app.runs_dir, f"{config.stem}-{time.strftime('%Y%m%d-%H%M%S')}"),  # type: ignore[attr-defined]
        )

    def action_start(self) -> None:
        from cmsgen.engine.errors import CmsgenError

        if self.process is not None and self.process.poll() is None:
            self.notify("A run started here is still running. Stop it (x) before you start another.", severity="warning")
            return
        try:
            settings = self.read_settings()
        except SettingsError as error:
            self.notify(str(error), title="Invalid setting", severity="error", timeout=8)
            return
        runs_dir: Path = self.app.runs_dir  # type: ignore[attr-defined]
        run_dir = runs_dir / settings.name
        try:
            config_path = write_requested_config(settings, run_dir)
        except CmsgenError as error:
            log.warning("invalid training config %s: %s", settings.config, error.message, exc_info=True)
            self.app.show_error("Invalid config", error.message)  # type: ignore[attr-defined]
            return
        except OSError as error:
            log.warning("cannot write into %s", run_dir, exc_info=True)
            self.app.show_error("Cannot create the run", f"Cannot write into {run_dir}: {error.strerror}.")  # type: ignore[attr-defined]
            return
        self.process_output = run_dir / PROCESS_LOG
        self.process = launch_training(
            [str(config_path), "--run-dir", str(runs_dir), "--name", settings.name], self.process_output
        )
        self._reported_exit = False
        self.set_focus(None)
        self.use_run(run_dir)
        self.notify(f"Started run {settings.name} (process {self.process.pid}).", title="Training")

    def _run_dir(self) -> Path | None:
        return self.query_one(RunMonitor).run_dir

    def action_stop(self) -> None:
        run_dir = self._run_dir()
        if run_dir is None:
            self.notify("No run attached: start one or pick one on the Runs screen.", severity="warning")
            return
        status = read_status(run_dir) or {}
        pid = status.get("pid")
        if status.get("state") != "running" or not process_alive(pid):
            if self.process is not None and self.process.poll() is None:
                pid = self.process.pid
            else:
                self.notify(f"Run {run_dir.name} is not running (state {status.get('state', 'unknown')}).", severity="warning")
                return
        try:
            os.kill(int(pid), signal.SIGTERM)  # type: ignore[arg-type]
        except ProcessLookupError:
            self.notify(f"Process {pid} of run {run_dir.name} has already ended.", severity="warning")
            return
        log.info("sent SIGTERM to process %s of run %s", pid, run_dir)
        self.notify(f"Stopping run {run_dir.name}: it saves a checkpoint first.", title="Training")

    def action_resume(self) -> None:
        run_dir = self._run_dir()
        if run_dir is None:
            self.notify("No run attached: pick a stopped run on the Runs screen, then press r.", severity="warning")
            return
        status = read_status(run_dir) or {}
        if status.get("state") == "running" and process_alive(status.get("pid")):
            self.notify(f"Run {run_dir.name} is still running.", severity="warning")
            return
        config = run_dir / "config.toml"
        if not config.is_file():
            self.app.show_error("Cannot resume", f"{config} not found: the run never started, so start a new one.")  # type: ignore[attr-defined]
            return
        self.process_output = run_dir / PROCESS_LOG
        self.process = launch_training(["--resume", str(run_dir)], self.process_output)
        self._reported_exit = False
        self.use_run(run_dir)
        self.notify(f"Resuming run {run_dir.name} (process {self.process.pid}).", title="Training")

    def _check_process(self) -> None:
        """Show an error when a process started here exits with a nonzero code and no "finished" or "stopped" state."""
        if self.process is None or self._reported_exit:
            return
        code = self.process.poll()
        if code is None:
            return
        self._reported_exit = True
        run_dir = self._run_dir()
        status = read_status(run_dir) if run_dir else None
        state = (status or {}).get("state")
        if code == 0 or state in ("finished", "stopped"):
            return
        detail = tail_text(self.process_output) if self.process_output else ""
        log.error("training process %d exited with code %d (state %s), output:\n%s", self.process.pid, code, state, detail)
        self.app.show_error(  # type: ignore[attr-defined]
            "Training failed",
            f"The training process exited with code {code} (state {state or 'never written'}).\n{detail}",
        )

    def on_run_monitor_state_changed(self, message: RunMonitor.StateChanged) -> None:
        if message.state == "finished":
            self.notify(f"Run {message.run_dir.name} finished.", title="Training")
        elif message.state in ("failed", "crashed") and not self._reported_exit:
            self.notify(
                f"Run {message.run_dir.name} {message.state}: {message.status.get('message', '')}",
                title="Training", severity="error", timeout=10,
            )
