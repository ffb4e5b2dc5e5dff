"""Live line plots of a run's metrics against the training step.

``MetricHistory`` stores the rows of ``metrics.jsonl`` as growing numpy arrays.
``LossPanel`` draws a chosen set of its metrics at a bounded rate, thinned to
the number of points the terminal can show. Smoothing and a logarithmic y axis
are toggled by keys, and the panel title names the ones that are on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cmsgen.tui import plots
from cmsgen.tui.widgets.plot_view import Series, draw_lines

# Keys of a metrics row that are not losses: bookkeeping, throughput and the physics metric.
# The trainer writes them for every model family. A model's own non-loss values are the
# hyperparameters it logs (see ``MetricHistory.settings``).
NON_LOSS_KEYS = frozenset(
    {"step", "epoch", "time", "lr", "events_per_second", "grad_norm", "w1_mass", "best_w1_mass"}
)

# Fraction of the points that the trailing moving average spans when smoothing is on, and its
# shortest span: with the fraction alone, a panel of fewer than 100 points did not change.
SMOOTHING_FRACTION = 0.02
MIN_SMOOTHING_WINDOW = 5

# Redraw period of a panel with new points, in seconds (at most 4 redraws a second).
REDRAW_PERIOD = 0.25


class _GrowingArray:
    """Float64 array with amortised O(1) appends."""

    def __init__(self) -> None:
        self._data = np.empty(256, dtype=np.float64)
        self.size = 0

    def append(self, value: float) -> None:
        if self.size == self._data.size:
            self._data = np.resize(self._data, self._data.size * 2)
        self._data[self.size] = value
        self.size += 1

    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def truncate(self, size: int) -> None:
        self.size = min(self.size, size)


class MetricHistory:
    """Every value of every numeric metric seen so far, keyed by metric name, with its step.

    Steps only grow within a run. A row with a smaller step than the last one means that the
    file was rewritten from an earlier step, as a resumed run drops the lines after its
    checkpoint. The values from that step on are then dropped before the row is added.
    """

    def __init__(self) -> None:
        self._steps: dict[str, _GrowingArray] = {}
        self._values: dict[str, _GrowingArray] = {}
        self.version = 0
        self.last_row: dict[str, Any] = {}
        # Hyperparameter names of the run's model (the keys of its config's [model] table). A
        # logged value with such a name is the setting used at that step, such as the VAE's
        # KL weight ``beta`` during its warm-up, not a loss.
        self.settings: frozenset[str] = frozenset()

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append the numeric values of ``rows``; return how many rows were added."""
        count = 0
        for row in rows:
            step = row.get("step")
            if not isinstance(step, (int, float)):
                continue
            if self.last_row and step < self.last_row.get("step", step):
                self._rewind(float(step))
            for key, value in row.items():
                if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if key not in self._values:
                    self._steps[key] = _GrowingArray()
                    self._values[key] = _GrowingArray()
                self._steps[key].append(float(step))
                self._values[key].append(float(value))
            self.last_row = dict(row)
            count += 1
        if count:
            self.version += 1
        return count

    def _rewind(self, step: float) -> None:
        """Drop every value logged at ``step`` or later."""
        for key, steps in self._steps.items():
            keep = int(np.searchsorted(steps.view(), step, side="left"))
            steps.truncate(keep)
            self._values[key].truncate(keep)

    @property
    def names(self) -> list[str]:
        return list(self._values)

    def loss_names(self) -> list[str]:
        """Return the names of the losses: every numeric key not in ``NON_LOSS_KEYS`` nor in ``settings``."""
        return [name for name in self._values if name not in NON_LOSS_KEYS and name not in self.settings]

    def setting_names(self) -> list[str]:
        """Return the names of the logged hyperparameters (see ``settings``)."""
        return [name for name in self._values if name in self.settings]

    def set_settings(self, names: Iterable[str]) -> None:
        """Set the hyperparameter names of the run's model, which leaves them out of ``loss_names``."""
        settings = frozenset(names)
        if settings != self.settings:
            self.settings = settings
            self.version += 1

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (steps, values) of one metric; empty arrays when it was never logged."""
        if name not in self._values:
            return np.empty(0), np.empty(0)
        return self._steps[name].view(), self._values[name].view()

    def __len__(self) -> int:
        return max((array.size for array in self._values.values()), default=0)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Return the trailing moving average of ``values`` over ``window`` points (shorter at the start)."""
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    upper = np.arange(1, values.size + 1)
    return (cumulative[upper] - cumulative[upper - counts]) / counts


def smoothing_window(n_points: int) -> int:
    """Return the span of the moving average over ``n_points`` points: 2 %, at least 5, at most half of them."""
    return max(1, min(max(MIN_SMOOTHING_WINDOW, int(n_points * SMOOTHING_FRACTION)), n_points // 2))


def thin(steps: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive points in equal groups so that at most ``max_points`` remain."""
    if steps.size <= max_points or max_points < 1:
        return steps, values
    starts = np.linspace(0, steps.size, max_points, endpoint=False).astype(np.int64)
    counts = np.diff(np.append(starts, steps.size))
    return np.add.reduceat(steps, starts) / counts, np.add.reduceat(values, starts) / counts


def prepare_series(
    history: MetricHistory, names: Sequence[str], smooth: bool, max_points: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the plotted (steps, values) of each metric: finite values only, smoothed if ``smooth`` is set, thinned."""
    prepared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        steps, values = history.series(name)
        finite = np.isfinite(values)
        steps, values = steps[finite], values[finite]
        if smooth:
            values = moving_average(values, smoothing_window(values.size))
        prepared[name] = thin(steps, values, max_points)
    return prepared


class LossPanel(Widget):
    """Live plot of some metrics of a run against the step.

    ``metrics`` names the plotted metrics, and None plots every loss. With
    ``mark_best``, the minimum of the first metric in ``metrics`` is marked: for
    ``w1_mass`` that is the step of the run's ``best`` checkpoint.
    """

    DEFAULT_CSS = """
    LossPanel {
        height: 1fr;
        width: 1fr;
    }
    """

    smooth: reactive[bool] = reactive(False)
    logy: reactive[bool] = reactive(False)

    def __init__(
        self,
        title: str,
        history: MetricHistory,
        metrics: Sequence[str] | None = None,
        mark_best: bool = False,
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.history = history
        self.metrics = tuple(metrics) if metrics is not None else None
        self.mark_best = mark_best
        self._drawn_version = -1
        self._cached: tuple[tuple[Any, ...], Text] | None = None

    def on_mount(self) -> None:
        self.set_interval(REDRAW_PERIOD, self._refresh_if_changed)

    def _refresh_if_changed(self) -> None:
        if self.history.version != self._drawn_version:
            self.refresh()

    def watch_smooth(self) -> None:
        self.refresh()

    def watch_logy(self) -> None:
        self.refresh()

    def plotted_names(self) -> list[str]:
        return list(self.metrics) if self.metrics is not None else self.history.loss_names()

    def best_point(self) -> tuple[float, float] | None:
        """Return (step, value) of the minimum of the first plotted metric, or None when nothing is marked."""
        if not self.mark_best or self.metrics is None or not self.metrics:
            return None
        steps, values = self.history.series(self.metrics[0])
        finite = np.isfinite(values)
        if not finite.any():
            return None
        index = int(np.argmin(np.where(finite, values, np.inf)))
        return float(steps[index]), float(values[index])

    def panel_title(self, best: tuple[float, float] | None = None, width: int | None = None) -> str:
        """Return the title with the display modes that are on, such as ``Losses (smoothed, log y)``.

        With ``width``, the title gets shorter forms until it fits: the best value with fewer
        digits, then without its step, then with the modes abbreviated. Only then is it cut.
        """
        modes = [mode for mode, on in (("smoothed", self.smooth), ("log y", self.logy)) if on]
        short_modes = [mode for mode, on in (("smooth", self.smooth), ("log", self.logy)) if on]
        title = f"{self.title} ({', '.join(modes)})" if modes else self.title
        if best is None:
            return title if width is None else title[:width]
        value, step = best[1], best[0]
        short_title = f"{self.title} ({', '.join(short_modes)})" if short_modes else self.title
        forms = [
            f"{title}  best {value:.4g} @ step {step:.0f}",
            f"{title}  best {value:.3g} @{step:.0f}",
            f"{title} best {value:.3g}",
            f"{short_title} best {value:.3g}",
        ]
        if width is None:
            return forms[0]
        fitting = [form for form in forms if len(form) <= width]
        return fitting[0] if fitting else forms[-1][:width]

    def render_text(self, width: int, height: int) -> Text:
        """Draw the panel into a ``width`` x ``height`` cell box."""
        names = self.plotted_names()
        # Braille markers give two points per cell across, so more points would be invisible.
        series: Series = prepare_series(self.history, names, self.smooth, max_points=max(2 * width, 2))
        if not any(steps.size for steps, _ in series.values()):
            return Text(f"{self.title}: waiting for the first logged step…")
        best = self.best_point()
        # The title gets its own line because the plot's first line is the colour key, and
        # a long key would cut the title there, with the modes that the keys m and y toggle.
        title = Text(self.panel_title(best, width), style="bold")
        plot = draw_lines(series, width, height - 1, "", logy=self.logy, marker=best, colorless=self.app.no_color)
        return Text("\n").join([title, plots.to_rich_text(plot)])

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        self._drawn_version = self.history.version
        if width < plots.MIN_WIDTH or height < plots.MIN_HEIGHT + 1:
            return Text(self.title)
        key = (self.history.version, width, height, self.smooth, self.logy)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self.render_text(width, height))
        return self._cached[1]


def format_duration(seconds: float | None) -> str:
    """Format a duration in seconds as ``1h02m``, ``3m05s`` or ``42s``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
