"""Terminal plots: the one module of the product that calls plotext.

Every function returns the plot as a string of exactly ``height`` lines
(plotext's ``build()``), with ANSI colours unless ``colorless=True``. The TUI
wraps it with ``rich.text.Text.from_ansi`` (see :func:`to_rich_text`); the CLI
prints it. plotext keeps one global figure, so a lock serialises the
builds, which lets TUI thread workers call these functions.

This module targets the plotext 6 API (``plotext.figure`` with signals and
subplots). plotext 5 used module-level functions (``plt.plot``,
``plt.build``), so :func:`_figure` rejects it with an error that names the
required version.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rich.text import Text

    from cmsgen.engine.validation.histograms import Histogram1D, HistogramComparison

_LOCK = threading.Lock()
# plotext's "simple" theme leaves the terminal background alone, so plots read on dark and light terminals.
THEME = "simple"
REAL_COLOR = "blue"
GENERATED_COLOR = "red"
MIN_WIDTH = 20
MIN_HEIGHT = 6
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _figure() -> Any:
    """Return plotext's master figure, cleared and themed.

    Raises RuntimeError when plotext lacks the figure API (versions before 6).
    """
    import plotext

    figure = getattr(plotext, "figure", None)
    if figure is None or not hasattr(figure, "signal"):
        version = getattr(plotext, "__version__", "unknown")
        raise RuntimeError(f"plotext {version} is not supported: install plotext>=6.1 (pip install -U plotext)")
    # The caller sets the size, and a widget may be larger than the terminal plotext detects, so lift its limit.
    plotext.terminal.limit(False, False)
    figure.clear()
    figure.theme(THEME)
    return figure


def _check_size(width: int, height: int) -> None:
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(f"a plot of {width}x{height} characters is too small: use at least {MIN_WIDTH}x{MIN_HEIGHT}")


def _step(edges: Sequence[float], values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Return the outline of a step histogram: x and y of every bin edge, skipping NaN bins."""
    xs: list[float] = []
    ys: list[float] = []
    for low, high, value in zip(edges[:-1], edges[1:], values):
        if value is None or not math.isfinite(value):
            continue
        xs += [float(low), float(high)]
        ys += [float(value), float(value)]
    return xs, ys


def _draw(plot: Any, xs: Sequence[float], ys: Sequence[float], color: str | None, label: str | None) -> None:
    if not xs:
        return
    signal = plot.signal(list(xs), list(ys), marker="braille")
    signal.lines()
    if label:
        signal.label(label)
    if color is not None:
        _set_color(signal, color)
    plot.draw(signal)


def _set_color(signal: Any, color: str) -> None:
    """Colour a signal when this plotext version offers a colour setter.

    Without a setter, the theme's colour sequence colours the signal.
    """
    setter = getattr(signal, "color", None)
    if callable(setter):
        setter(color)


def _finish(figure: Any, height: int, colorless: bool) -> str:
    """Build the figure and return it as exactly ``height`` lines, cut or padded with blank lines."""
    text = figure.build().string(colorless=colorless)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if len(lines) > height:
        lines = lines[:height]
    width = max((len(_ANSI.sub("", line)) for line in lines), default=0)
    lines += [" " * width] * (height - len(lines))
    return "\n".join(lines)


def _axis_label(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


def render_comparison(
    hc: HistogramComparison | Mapping[str, Any],
    width: int = 80,
    height: int = 24,
    title: str | None = None,
    colorless: bool = False,
) -> str:
    """Plot real and generated normalised histograms as overlaid steps, with a generated/real ratio panel below.

    ``hc`` is a :class:`HistogramComparison` or its ``to_dict()`` form (as
    stored in ``validation.json``). The ratio panel takes about a third of
    the height (at least 5 lines) and shows the y range 0-2, with ratios
    clipped to it, around the ideal line at 1. The default title is the
    variable name and unit. The plot is readable from 80x24 characters.
    """
    _check_size(width, height)
    if isinstance(hc, Mapping):
        from cmsgen.engine.validation.histograms import histogram_comparison_from_dict

        hc = histogram_comparison_from_dict(hc)
    ratio_height = max(5, height // 3)
    main_height = height - ratio_height
    edges = np.asarray(hc.edges, dtype=np.float64)
    with _LOCK:
        figure = _figure()
        figure.plot_size(width, height)
        figure.subplots(2, 1)
        top = figure.subplot(1, 1)
        bottom = figure.subplot(2, 1)
        top.plot_size(width, main_height)
        bottom.plot_size(width, ratio_height)

        _draw(top, *_step(edges, hc.real), REAL_COLOR, "real")
        _draw(top, *_step(edges, hc.generated), GENERATED_COLOR, "generated")
        top.title(title if title is not None else f"{_axis_label(hc.name, hc.unit)}: real vs generated (normalised)")

        _draw(bottom, *_step(edges, np.clip(hc.ratio, 0.0, 2.0)), GENERATED_COLOR, None)
        _draw(bottom, [float(edges[0]), float(edges[-1])], [1.0, 1.0], REAL_COLOR, None)
        bottom.ruler("y").lim(0.0, 2.0)
        bottom.ruler("x").lim(float(edges[0]), float(edges[-1]))
        top.ruler("x").lim(float(edges[0]), float(edges[-1]))
        bottom.title("generated / real")
        return _finish(figure, height, colorless)


def render_histogram(h: Histogram1D, width: int = 80, height: int = 24, title: str = "", colorless: bool = False) -> str:
    """Plot one histogram (counts per bin) as a step line with ``title`` on top."""
    _check_size(width, height)
    with _LOCK:
        figure = _figure()
        figure.plot_size(width, height)
        _draw(figure, *_step(np.asarray(h.edges), np.asarray(h.counts)), REAL_COLOR, None)
        figure.ruler("x").lim(float(h.edges[0]), float(h.edges[-1]))
        outside = h.underflow + h.overflow
        suffix = f" ({outside} outside the range)" if outside else ""
        figure.title(f"{title}{suffix}")
        return _finish(figure, height, colorless)


def render_lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    width: int = 80,
    height: int = 24,
    title: str = "",
    logy: bool = False,
    marker: tuple[float, float] | None = None,
    colorless: bool = False,
) -> str:
    """Plot named (x, y) series as lines, for loss curves.

    ``logy`` draws the y axis on a log scale and leaves out points with
    y <= 0. ``marker`` is an (x, y) point, such as the best epoch, drawn as a
    dot labelled "best". Non-finite points are left out.
    """
    _check_size(width, height)
    with _LOCK:
        figure = _figure()
        figure.plot_size(width, height)
        for name, (xs, ys) in series.items():
            points = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(float(y)) and (not logy or y > 0)]
            if points:
                _draw(figure, [p[0] for p in points], [p[1] for p in points], None, name)
        if marker is not None and all(math.isfinite(v) for v in marker) and (not logy or marker[1] > 0):
            point = figure.signal([float(marker[0])], [float(marker[1])], marker="●")
            point.label("best")
            figure.draw(point)
        if logy:
            figure.ruler("y").scale("log")
        figure.title(title)
        return _finish(figure, height, colorless)


def to_rich_text(plot: str) -> Text:
    """Wrap a rendered plot for a rich or Textual widget."""
    from rich.text import Text

    return Text.from_ansi(plot, no_wrap=True)
