"""The Train screen: pick a config and the data, edit the main settings, start, stop and resume runs.

The Data field shows the data paths of the chosen config, so the form shows what
a new run reads. An edited Data field replaces the config's paths. Attaching to
a run fills the form with that run's config and data.

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
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select

from cmsgen.engine.errors import EXIT_INTERRUPTED
from cmsgen.tui.widgets.metrics_tail import read_status
from cmsgen.tui.widgets.run_monitor import PROCESS_LOG, RUN_CONFIG, RunMonitor, message_for_app, process_alive

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
# Texts of the label after the Data field.
DATA_FROM_CONFIG = "from config"
DATA_EDITED = "edited"
DATA_CONFIG_INVALID = "invalid config"
DATA_READING = "reading config…"
# The timestamp that the Train screen appends to a run name, with an optional "-N" counter.
RUN_NAME_SUFFIX = re.compile(r"-\d{8}-\d{6}(-\d+)?$")
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


class ConfigDataRead(Message):
    """The data paths of a config read in a worker, or the error that made the config invalid."""

    def __init__(self, config: Path, paths: tuple[str, ...] | None, error: str | None) -> None:
        super().__init__()
        self.config = config
        self.paths = paths
        self.error = error


class RunPrepared(Message):
    """The requested config of a new run, validated and written into its run directory, or why that failed."""

    def __init__(self, name: str, run_dir: Path, config_path: Path | None, title: str = "", error: str = "") -> None:
        super().__init__()
        self.name = name
        self.run_dir = run_dir
        self.config_path = config_path
        self.title = title
        self.error = error


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


def read_config_data(config: Path) -> tuple[str, ...]:
    """Return the data paths of a config file, resolved as the trainer resolves them.

    Raises ``ConfigError`` (from the engine) for a missing or invalid config.
    """
    from cmsgen.engine.training.config import load_config

    return tuple(load_config(config).data.paths)


def run_name_stem(config: Path) -> str:
    """Return the start of a new run's name: the config's file name, or for a run's ``config.toml``, that run's name.

    A timestamp that the Train screen appended to the run's name is dropped, so
    names do not grow with each run trained from another run's config.
    """
    if config.name == RUN_CONFIG and (config.parent / "status.json").is_file():
        return RUN_NAME_SUFFIX.sub("", config.parent.name) or config.parent.name
    return config.stem


def process_output(path: Path, max_lines: int = 6) -> str:
    """Return the last ``max_lines`` output lines of the latest process in a process log.

    ``launch_training`` writes a ``$ COMMAND`` line before each process's output,
    and that line and the lines before it are left out. An unreadable file gives "".
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("$ ")]
    if starts:
        lines = lines[starts[-1] + 1 :]
    return "\n".join([line for line in lines if line.strip()][-max_lines:])


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
        # The underlined letter of each field's label shows these keys.
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
        # The run directory and output file of ``process``.
        self.process_run: Path | None = None
        self.process_output: Path | None = None
        self.smooth = False
        self.logy = False
        self._reported_exit = False
        # The config whose data the Data field shows, and that data as the field shows it.
        # The text is None when no valid config is chosen.
        self._shown_config: Path | None = None
        self._config_data_text: str | None = None
        self._config_invalid = False
        self._preparing = False
        self._reading_config = False
        # Whether s was pressed while the config was read, so the run starts once the read ends.
        self._start_requested = False
        # The run that x asked to stop, so that its exit reads as a stop, not an error.
        self._stop_requested: Path | None = None
        # Whether s was pressed while the config list was open, so the run starts with the picked config.
        self._start_after_pick = False
        self._value_before_pick: object = Select.NULL

    def compose(self) -> ComposeResult:
        configs = find_sample_configs()
        yield Header()
        with Vertical(id="train-form"):
            with Horizontal(classes="form-row"):
                yield Label("[u]C[/u]onfig", classes="form-label")
                yield Select(
                    [(path.name, str(path)) for path in configs],
                    prompt="sample config",
                    allow_blank=True,
                    value=str(configs[0]) if configs else Select.NULL,
                    compact=True,
                    type_to_search=False,
                    id="train-config-choice",
                )
                yield Input(placeholder="or a config path", compact=True, id="train-config-path")
            with Horizontal(classes="form-row"):
                yield Label("[u]D[/u]ata", classes="form-label")
                yield Input(placeholder="the config's data paths", compact=True, id="train-data")
                yield Label("", classes="form-label-short", id="train-data-source")
            with Horizontal(classes="form-row"):
                yield Label("[u]E[/u]pochs", classes="form-label")
                yield Input(placeholder="config", compact=True, id="train-epochs", classes="number")
                yield Label("[u]B[/u]atch", classes="form-label-short")
                yield Input(placeholder="config", compact=True, id="train-batch", classes="number")
                yield Label("[u]L[/u]R", classes="form-label-short")
                yield Input(placeholder="config", compact=True, id="train-lr", classes="number")
                yield Label("Device", classes="form-label-short")
                yield Select([(device, device) for device in DEVICES], value="auto", allow_blank=False, compact=True, id="train-device")
        yield RunMonitor(id="train-monitor")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._check_process)
        self.watch(self.query_one("#train-config-choice", Select), "expanded", self._config_list_toggled, init=False)
        self.show_config_data()

    def _config_list_toggled(self, expanded: bool) -> None:
        """Keep a start request made while the config list was open for the config picked there."""
        select = self.query_one("#train-config-choice", Select)
        if expanded:
            self._value_before_pick = select.value
            return
        if self._start_after_pick and select.value == self._value_before_pick:
            # The list closed on the same config, so no new config is read and the run can start now.
            self._start_after_pick = False
            self.call_later(self.action_start)

    def on_screen_resume(self) -> None:
        current = getattr(self.app, "current_run", None)
        monitor = self.query_one(RunMonitor)
        if current is not None and monitor.run_dir != current:
            monitor.attach(current)
            self.show_run_config(current)

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

    # ----------------------------------------------------------------- the form

    def chosen_config(self) -> Path | None:
        """Return the typed config path, else the chosen sample config, else None."""
        typed = self.query_one("#train-config-path", Input).value.strip()
        if typed:
            return Path(typed).expanduser()
        chosen = self.query_one("#train-config-choice", Select).value
        if chosen is Select.NULL:
            return None
        return Path(str(chosen))

    def show_config_data(self) -> None:
        """Fill the Data field with the data paths of the chosen config, read in a worker with the engine's loader.

        Loading a config imports torch and scipy the first time, because it checks the model
        and validation keys, so it stays off the UI thread. An invalid config empties the
        field and shows its error once.
        """
        config = self.chosen_config()
        if config == self._shown_config:
            return
        self._shown_config = config
        self._config_data_text = None
        self._config_invalid = False
        self._reading_config = False
        # A start request made before this config was picked was for the previous config, unless
        # s was pressed while the config list was open.
        self._start_requested = self._start_after_pick
        self._start_after_pick = False
        data = self.query_one("#train-data", Input)
        if config is None or not config.is_file():
            data.value = ""
            self._update_data_source()
            if self._start_requested:
                # Nothing to read: the start reports the missing config.
                self._start_requested = False
                self.call_later(self.action_start)
            return
        # Until the config is read, the field is empty, which means the config's own data: the
        # paths of the previous config must not count as edited paths if s is pressed meanwhile.
        self._reading_config = True
        data.value = ""
        self._update_data_source()
        self._read_config_data(config)

    @work(thread=True, exclusive=True, group="train-config", exit_on_error=False, description="read a training config")
    def _read_config_data(self, config: Path) -> None:
        from cmsgen.engine.errors import CmsgenError

        try:
            paths = read_config_data(config)
        except CmsgenError as error:
            log.warning("invalid training config %s: %s", config, error.message)
            self.post_message(ConfigDataRead(config, None, error.message))
            return
        self.post_message(ConfigDataRead(config, paths, None))

    def on_config_data_read(self, message: ConfigDataRead) -> None:
        if message.config != self._shown_config:
            return  # the user picked another config meanwhile
        self._reading_config = False
        start_requested, self._start_requested = self._start_requested, False
        data = self.query_one("#train-data", Input)
        if message.paths is None:
            self._config_invalid = True
            data.value = ""
            self._update_data_source()
            self.notify(f"Config {message.config} is invalid: {message.error}", title="Invalid config", severity="error", timeout=10)
            return
        self._config_data_text = shlex.join(message.paths)
        data.value = self._config_data_text
        data.cursor_position = 0
        self._update_data_source()
        if start_requested:
            self.action_start()

    def show_run_config(self, run_dir: Path) -> None:
        """Fill the Config and Data fields with the config of ``run_dir``, when it has one."""
        config = run_dir / RUN_CONFIG
        if not config.is_file():
            return
        self.query_one("#train-config-choice", Select).clear()
        self.query_one("#train-config-path", Input).value = str(config)
        # Values typed for another run must not carry over: r would extend this run to them.
        for field_id in ("#train-epochs", "#train-batch", "#train-lr"):
            self.query_one(field_id, Input).value = ""
        self.show_config_data()

    def data_is_from_config(self) -> bool:
        """Return whether the Data field means the config's own data, because it is empty or unedited."""
        text = self.query_one("#train-data", Input).value
        return not text.strip() or text == self._config_data_text

    def _update_data_source(self) -> None:
        if self._reading_config:
            source = DATA_READING
        elif self._config_invalid:
            source = DATA_CONFIG_INVALID
        elif self._shown_config is None or not self._shown_config.is_file():
            source = ""
        elif self.data_is_from_config():
            source = DATA_FROM_CONFIG
        else:
            source = DATA_EDITED
        self.query_one("#train-data-source", Label).update(source)

    @on(Select.Changed, "#train-config-choice")
    def _config_chosen(self, event: Select.Changed) -> None:
        # The Select posts Changed for its initial value when it mounts, which can arrive after
        # show_run_config has cleared it, so the current value counts, not the event's.
        if event.value is Select.NULL or event.value != event.select.value:
            return
        path_input = self.query_one("#train-config-path", Input)
        if path_input.value:
            path_input.value = ""  # its Changed handler shows the chosen config's data
        else:
            self.show_config_data()

    @on(Input.Changed, "#train-config-path")
    def _config_typed(self) -> None:
        self.show_config_data()

    @on(Input.Changed, "#train-data")
    def _data_edited(self) -> None:
        self._update_data_source()

    def read_settings(self) -> TrainSettings:
        """Return the validated form values, or raise ``SettingsError`` naming the invalid field."""
        config = self.chosen_config()
        if config is None:
            raise SettingsError("no config chosen. Pick a sample config or type the path of a TOML config.")
        if not config.is_file():
            raise SettingsError(f"config file {config} not found. Type the path of an existing TOML config.")
        data: tuple[str, ...] = ()
        if not self.data_is_from_config():
            try:
                data = tuple(shlex.split(self.query_one("#train-data", Input).value))
            except ValueError as error:
                raise SettingsError(f"the data paths cannot be split ({error}). Quote paths that contain spaces.") from None
            for path in data:
                if not Path(path).expanduser().exists():
                    raise SettingsError(
                        f"data path {path} not found. Type existing files or directories, or empty the field to use the config's data."
                    )
        device = self.query_one("#train-device", Select).value
        return TrainSettings(
            config=config,
            data=data,
            epochs=self.read_epochs(),
            batch_size=parse_optional(self.query_one("#train-batch", Input).value, int, "batch size", 1),
            lr=parse_optional(self.query_one("#train-lr", Input).value, float, "learning rate", 0.0),
            device=None if device in (Select.NULL, "auto") else str(device),
            name=unique_run_name(self.app.runs_dir, f"{run_name_stem(config)}-{time.strftime('%Y%m%d-%H%M%S')}"),  # type: ignore[attr-defined]
        )

    def read_epochs(self) -> int | None:
        """Return the Epochs field as an int, or None when empty. Raise ``SettingsError`` when invalid."""
        return parse_optional(self.query_one("#train-epochs", Input).value, int, "epochs", 1)

    # ----------------------------------------------------------------- start, stop and resume

    def action_start(self) -> None:
        if self.query_one("#train-config-choice", Select).expanded:
            # Keys typed quickly can reach the screen before the list reports the pick.
            self._start_after_pick = True
            self.notify("The run starts with the picked config once it is read.", title="Training")
            return
        if self.process is not None and self.process.poll() is None:
            self.notify("A run started here is still running. Stop it (x) before you start another.", severity="warning")
            return
        try:
            settings = self.read_settings()
        except SettingsError as error:
            self.notify(str(error), title="Invalid setting", severity="error", timeout=8)
            return
        if self._preparing:
            self.notify("The run is being prepared: wait a moment.", severity="warning")
            return
        if self._reading_config:
            self._start_requested = True
            self.notify("The config is being read: the run starts when the read ends.", title="Training")
            return
        runs_dir: Path = self.app.runs_dir  # type: ignore[attr-defined]
        self._preparing = True
        self._prepare_run(settings, runs_dir / settings.name)

    @work(thread=True, exclusive=True, group="train-prepare", exit_on_error=False, description="prepare a training run")
    def _prepare_run(self, settings: TrainSettings, run_dir: Path) -> None:
        """Validate the edited config and write it into the new run directory, off the UI thread."""
        from cmsgen.engine.errors import CmsgenError

        try:
            config_path = write_requested_config(settings, run_dir)
        except CmsgenError as error:
            log.warning("invalid training config %s: %s", settings.config, error.message, exc_info=True)
            self.post_message(RunPrepared(settings.name, run_dir, None, "Invalid config", error.message))
            return
        except OSError as error:
            log.warning("cannot write into %s", run_dir, exc_info=True)
            self.post_message(
                RunPrepared(settings.name, run_dir, None, "Cannot create the run", f"Cannot write into {run_dir}: {error.strerror}.")
            )
            return
        self.post_message(RunPrepared(settings.name, run_dir, config_path))

    def on_run_prepared(self, message: RunPrepared) -> None:
        self._preparing = False
        if message.config_path is None:
            self.app.show_error(message.title, message.error)  # type: ignore[attr-defined]
            return
        runs_dir = message.run_dir.parent
        self._launch(message.run_dir, [str(message.config_path), "--run-dir", str(runs_dir), "--name", message.name])
        self.set_focus(None)
        self.notify(f"Started run {message.name} (process {self.process.pid}).", title="Training")  # type: ignore[union-attr]

    def _launch(self, run_dir: Path, arguments: list[str]) -> None:
        self.process_run = run_dir
        self.process_output = run_dir / PROCESS_LOG
        self.process = launch_training(arguments, self.process_output)
        self._reported_exit = False
        self.use_run(run_dir)

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
            if self.process is not None and self.process.poll() is None and self.process_run == run_dir:
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
        self._stop_requested = run_dir
        self.notify(f"Stopping run {run_dir.name}: it saves a checkpoint first.", title="Training")

    def action_resume(self) -> None:
        """Continue the attached run from its last checkpoint, up to the Epochs field's total when it is set."""
        run_dir = self._run_dir()
        if run_dir is None:
            self.notify("No run attached: pick a stopped run on the Runs screen, then press r.", severity="warning")
            return
        if self.process is not None and self.process.poll() is None:
            self.notify("A run started here is still running. Stop it (x) before you resume another.", severity="warning")
            return
        status = read_status(run_dir) or {}
        if status.get("state") == "running" and process_alive(status.get("pid")):
            self.notify(f"Run {run_dir.name} is still running.", severity="warning")
            return
        config = run_dir / RUN_CONFIG
        if not config.is_file():
            self.app.show_error("Cannot resume", f"{config} not found: the run never started, so start a new one.")  # type: ignore[attr-defined]
            return
        try:
            epochs = self.read_epochs()
        except SettingsError as error:
            self.notify(str(error), title="Invalid setting", severity="error", timeout=8)
            return
        trained = status.get("epoch")
        if isinstance(trained, int) and (
            (epochs is not None and epochs <= trained) or (epochs is None and status.get("state") == "finished")
        ):
            self.notify(
                f"Run {run_dir.name} already trained {trained} epochs: set Epochs above {trained} to train further.",
                title="Cannot resume", severity="warning", timeout=8,
            )
            return
        arguments = ["--resume", str(run_dir)]
        if epochs is not None:
            arguments += ["--epochs", str(epochs)]
        self._launch(run_dir, arguments)
        self.notify(f"Resuming run {run_dir.name} (process {self.process.pid}).", title="Training")  # type: ignore[union-attr]

    def _check_process(self) -> None:
        """Show an error when a process started here exits with an error.

        Exit code 0 (finished) and EXIT_INTERRUPTED with the state "stopped" are the normal ends.
        Any other code is an error, whatever state the run had before the process started.
        """
        if self.process is None or self._reported_exit:
            return
        code = self.process.poll()
        if code is None:
            return
        self._reported_exit = True
        status = read_status(self.process_run) if self.process_run else None
        state = (status or {}).get("state")
        if code == 0 or (code == EXIT_INTERRUPTED and state == "stopped"):
            return
        run_name = self.process_run.name if self.process_run else "?"
        if code == EXIT_INTERRUPTED and self.process_run is not None and self._stop_requested == self.process_run:
            # x stopped the run while it read its data, before it had a checkpoint: the user's own stop, not an error.
            self.notify(f"Run {run_name} stopped before training started, so it has nothing to resume. Press s to start again.", title="Training")
            return
        if status is None:
            # The process failed before it wrote a status, so the monitor would wait for one forever.
            self.query_one(RunMonitor).detach(f"Run {run_name} failed before it started: see the error.")
        output = process_output(self.process_output) if self.process_output else ""
        log.error("training process %d exited with code %d (state %s), output:\n%s", self.process.pid, code, state, output)
        lines = [f"The training process of run {run_name} exited with code {code}."]
        if output:
            lines.append(output)
        if self.process_output:
            lines.append(f"Process output: {self.process_output}")
        self.app.show_error("Training failed", "\n".join(lines))  # type: ignore[attr-defined]

    def _started_here(self, run_dir: Path) -> bool:
        """Return whether the latest process started from this screen trains ``run_dir``."""
        return self.process is not None and self.process_run == run_dir

    def on_run_monitor_state_changed(self, message: RunMonitor.StateChanged) -> None:
        name = message.run_dir.name
        if message.state == "finished":
            self.notify(f"Run {name} finished.", title="Training")
        elif message.state == "stopped":
            self.notify(f"Run {name} stopped: press r on the Train screen to resume.", title="Training")
        elif message.state in ("failed", "crashed") and not self._started_here(message.run_dir):
            # A process started here gets the error modal with its output from _check_process instead.
            self.notify(
                f"Run {name} {message.state}: {message_for_app(message.status)}",
                title="Training", severity="error", timeout=10,
            )
