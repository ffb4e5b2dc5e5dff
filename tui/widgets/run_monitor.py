"""The live view of one run directory: a status line, the loss panel and the physics-metric panel.

A thread worker follows ``metrics.jsonl`` by offset and ``status.json`` by
modification time. It puts new rows in a buffer and posts ``MetricsAvailable``.
Pending notifications of the same buffer merge into one (``can_replace``), so a
fast writer cannot flood the message queue. The handler on the UI thread drains
every buffered row at once.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import tomllib
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from cmsgen.engine.logs import log_path
from cmsgen.tui.widgets.loss_panel import LossPanel, MetricHistory, format_duration
from cmsgen.tui.widgets.metrics_tail import METRICS_FILE, STATUS_FILE, MetricsTail, read_status

log = logging.getLogger(__name__)

# Output of a training process that the app started, in its run directory. A run
# started from the command line has no such file: its output went to its terminal.
PROCESS_LOG = "train-process.log"
# The resolved config that the trainer writes into the run directory.
RUN_CONFIG = "config.toml"
# Number of latest logged intervals that the events-per-second figure averages.
RATE_WINDOW = 10

# Seconds between polls of an active run, and of a run in a final state.
POLL_PERIOD_ACTIVE = 0.2
POLL_PERIOD_IDLE = 1.0
# States that a trainer writes when it exits. A stopped run can be resumed later.
FINAL_STATES = frozenset({"finished", "stopped", "failed"})


class RowBuffer:
    """Rows read by the follower thread and not yet taken by the UI thread."""

    def __init__(self) -> None:
        self._rows: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()

    def extend(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self._rows)
            self._rows.clear()
        return rows


def process_alive(pid: object) -> bool:
    """Return whether a process with this id exists on this machine. A pid that is not a positive int counts as dead."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def estimate_remaining_seconds(status: dict[str, Any], now: float | None = None) -> float | None:
    """Estimate the seconds left from the run's start time and progress.

    Return None unless progress is strictly between 0 and 1 and the start time is an ISO timestamp.
    """
    progress = status.get("progress")
    started = status.get("started")
    if not isinstance(progress, (int, float)) or not 0 < progress < 1 or not isinstance(started, str):
        return None
    try:
        start = datetime.fromisoformat(started).timestamp()
    except ValueError:
        return None
    elapsed = (time.time() if now is None else now) - start
    return elapsed * (1 - progress) / progress


def recent_events_per_second(history: MetricHistory, window: int = RATE_WINDOW) -> float | None:
    """Return the events per second over the last ``window`` logged intervals, or None before the first.

    Each metrics line carries the rate of the steps since the line before it. The
    result is the events of those intervals divided by their time (the
    step-weighted harmonic mean of the rates), so a short interval, such as the
    few steps before an epoch's end, counts for its few steps only. The batch
    size cancels out. The first line's interval counts from step 0.
    """
    steps, rates = history.series("events_per_second")
    # Only the latest lines are read, so the cost does not grow with the run's length.
    start = max(0, steps.size - window)
    intervals = np.diff(steps[start:], prepend=steps[start - 1] if start > 0 else 0.0)
    rates = rates[start:]
    valid = np.isfinite(rates) & (rates > 0) & (intervals > 0)
    intervals, rates = intervals[valid], rates[valid]
    if intervals.size == 0:
        return None
    return float(intervals.sum() / (intervals / rates).sum())


def message_for_app(status: dict[str, Any]) -> str:
    """Return the status message with the command-line resume hint replaced by the app's key."""
    message = str(status.get("message") or "")
    if status.get("state") == "stopped":
        # The trainer ends the message of a stopped run with "Resume with --resume RUN_DIR".
        message = re.sub(r"\.?\s*Resume with --resume\b.*$", "", message)
        message = f"{message}. Press r to resume." if message else "Press r to resume."
    return message


def crash_message(run_dir: Path) -> str:
    """Return the message of a run whose process ended without writing a final state, naming where its output is."""
    process_log = run_dir / PROCESS_LOG
    if process_log.is_file():
        where = f"Its output is in {process_log}."
    else:
        where = f"See the terminal that started it and the log file {log_path()}."
    return f"The training process ended without writing a final state. {where}"


def read_model_settings(run_dir: Path) -> frozenset[str] | None:
    """Return the hyperparameter names in the [model] table of the run's config, or None before the file exists."""
    path = run_dir / RUN_CONFIG
    try:
        with path.open("rb") as stream:
            table = tomllib.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as error:
        log.warning("cannot read the model settings of %s: %s", path, error)
        return frozenset()
    model = table.get("model")
    if not isinstance(model, dict):
        return frozenset()
    return frozenset(name for name in model if name != "family")


def describe_status(
    status: dict[str, Any] | None,
    events_per_second: float | None = None,
    settings: dict[str, float] | None = None,
) -> str:
    """Return the summary of a run: state, step, epoch, throughput, ETA, logged settings and the physics metric.

    ``settings`` maps the model's logged hyperparameters (such as ``beta``) to their latest value.
    The run's message, if any, goes on a second line.
    """
    if status is None:
        return "No status.json yet: waiting for the run to start."
    parts = [
        f"[b]{status.get('name', '?')}[/b]",
        f"{status.get('model', '?')}/{status.get('feature_set', '?')}",
        f"[b]{status.get('state', '?')}[/b]",
        f"step {status.get('step', 0)}/{status.get('total_steps', '?')}",
        f"epoch {status.get('epoch', 0)}/{status.get('total_epochs', '?')}",
    ]
    if events_per_second is not None:
        parts.append(f"{events_per_second:,.0f} ev/s")
    if status.get("state") == "running":
        parts.append(f"ETA {format_duration(estimate_remaining_seconds(status))}")
    for name, value in (settings or {}).items():
        parts.append(f"{name} {value:.3g}")
    best = status.get("best_metric")
    if isinstance(best, (int, float)):
        parts.append(f"best w1_mass {best:.4g} @ {status.get('best_step')}")
    message = escape(message_for_app(status))
    line = " · ".join(parts)
    return f"{line}\n{message}" if message else line


class RunMonitor(Vertical):
    """Live view of one run directory that shows its losses and physics metric as they are written."""

    DEFAULT_CSS = """
    RunMonitor { height: 1fr; }
    RunMonitor > #run-status { height: auto; max-height: 3; padding: 0 1; }
    RunMonitor > Horizontal { height: 1fr; }
    RunMonitor #loss-panel { width: 3fr; }
    RunMonitor #metric-panel { width: 2fr; }
    """

    class MetricsAvailable(Message):
        """Notification of new rows, a new status or both for the followed run."""

        def __init__(
            self,
            buffer: RowBuffer,
            run_dir: Path,
            status: dict[str, Any] | None,
            settings: frozenset[str] | None = None,
        ) -> None:
            super().__init__()
            self.buffer = buffer
            self.run_dir = run_dir
            self.status = status
            # Hyperparameter names of the run's model, None until its config.toml is read.
            self.settings = settings

        def can_replace(self, message: Message) -> bool:
            # The rows stay in the shared buffer, so dropping a notification loses nothing.
            return isinstance(message, RunMonitor.MetricsAvailable) and message.buffer is self.buffer

    class StateChanged(Message):
        """Notification that the followed run changed state (running, finished, stopped, failed, crashed)."""

        def __init__(self, run_dir: Path, state: str, status: dict[str, Any]) -> None:
            super().__init__()
            self.run_dir = run_dir
            self.state = state
            self.status = status

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.history = MetricHistory()
        self.run_dir: Path | None = None
        self.status: dict[str, Any] | None = None
        self._buffer = RowBuffer()
        self._state: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            "No run attached. Fill the form (the underlined letters jump to a field) and press s, "
            "or pick a run on the Runs screen (4).",
            id="run-status",
        )
        with Horizontal():
            yield LossPanel("Losses", self.history, id="loss-panel")
            yield LossPanel("w1_mass", self.history, metrics=("w1_mass",), mark_best=True, id="metric-panel")

    def status_text(self) -> str:
        """Return the status summary of the followed run, with the rate and settings from its metrics."""
        last_row = self.history.last_row
        settings = {
            name: float(last_row[name])
            for name in self.history.setting_names()
            if isinstance(last_row.get(name), (int, float))
        }
        return describe_status(self.status, recent_events_per_second(self.history), settings)

    @property
    def rows_received(self) -> int:
        return len(self.history)

    def attach(self, run_dir: Path) -> None:
        """Follow ``run_dir`` from its first logged step, replacing any run followed before."""
        self.run_dir = Path(run_dir)
        self.history = MetricHistory()
        self._buffer = RowBuffer()
        self._state = None
        self.status = None
        for panel in self.query(LossPanel):
            panel.history = self.history
            panel.refresh()
        self.query_one("#run-status", Static).update(f"Attaching to {self.run_dir}…")
        log.info("attaching the run monitor to %s", self.run_dir)
        self._follow(self.run_dir, self._buffer)

    def detach(self, message: str | None = None) -> None:
        """Stop following the current run, and show ``message`` in the status line when given. The run itself keeps going."""
        self.workers.cancel_group(self, "run-follow")
        self.run_dir = None
        if message is not None:
            self.query_one("#run-status", Static).update(message)

    def set_smoothing(self, smooth: bool) -> None:
        for panel in self.query(LossPanel):
            panel.smooth = smooth

    def set_log_scale(self, logy: bool) -> None:
        for panel in self.query(LossPanel):
            panel.logy = logy

    @work(thread=True, exclusive=True, group="run-follow", exit_on_error=False, description="follow a run's metrics")
    def _follow(self, run_dir: Path, buffer: RowBuffer) -> None:
        worker = get_current_worker()
        tail = MetricsTail(run_dir / METRICS_FILE)
        status_path = run_dir / STATUS_FILE
        status_mtime: float | None = None
        status: dict[str, Any] | None = None
        settings: frozenset[str] | None = None
        while not worker.is_cancelled:
            rows = tail.read_new()
            if rows:
                buffer.extend(rows)
            settings_read = False
            if settings is None:
                settings = read_model_settings(run_dir)
                settings_read = settings is not None

            status_changed = False
            try:
                mtime = status_path.stat().st_mtime
            except FileNotFoundError:
                mtime = None
            if mtime != status_mtime:
                status_mtime = mtime
                status = read_status(run_dir)
                status_changed = True
            if status is not None and status.get("state") == "running" and not process_alive(status.get("pid")):
                status = dict(status, state="crashed", message=crash_message(run_dir))
                status_changed = True

            if rows or status_changed or settings_read:
                self.post_message(self.MetricsAvailable(buffer, run_dir, status, settings))

            active = status is None or status.get("state") not in FINAL_STATES | {"crashed"}
            if rows and not tail.at_end:
                continue  # a long file is read in several batches without waiting
            time.sleep(POLL_PERIOD_ACTIVE if active else POLL_PERIOD_IDLE)

    def on_run_monitor_metrics_available(self, message: MetricsAvailable) -> None:
        message.stop()
        if message.buffer is not self._buffer:
            return  # a notification from a run followed before
        if message.settings is not None:
            self.history.set_settings(message.settings)
        self.history.add_rows(message.buffer.drain())
        if message.status is not None:
            self.status = message.status
        self.query_one("#run-status", Static).update(self.status_text())
        state = self.status.get("state") if self.status else None
        if state is not None and state != self._state:
            self._state = state
            self.post_message(self.StateChanged(message.run_dir, str(state), dict(self.status or {})))
