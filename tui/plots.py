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
# plotext's "simple" theme draws no colours on the frame. Its canvas is white, so _figure and
# each subplot set the canvas to "default", which leaves the terminal's background.
THEME = "simple"
# plotext 6.1 colours the signals of a plot in the order they are drawn, with this
# sequence of 256-colour codes (bright blue, green, red, cyan, magenta, yellow).
# The colour keys above the plots use the same codes.
SERIES_COLORS = (12, 10, 9, 14, 13, 11)
# Without colours, each series is drawn with its own glyph, which the key shows. The first is
# plotext's braille marker, shown in the key as a short braille line.
SERIES_MARKERS = ("braille", "•", "x", "+", "o", "*")
BRAILLE_KEY = "⠤⠤"
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
    # "default" leaves the canvas unpainted; the theme alone paints it white, a bright block on dark terminals.
    figure.canvas("default")
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


def _series_marker(index: int, colorless: bool) -> str:
    """Return the plotext marker of series ``index``: braille in colour, else a glyph of its own."""
    return SERIES_MARKERS[index % len(SERIES_MARKERS)] if colorless else "braille"


def _key_glyph(index: int, colorless: bool) -> str:
    """Return the key's sample of series ``index``: a coloured bar in colour, else the series' glyph."""
    if not colorless:
        return "━"
    marker = _series_marker(index, colorless)
    return BRAILLE_KEY if marker == "braille" else marker * 2


def _key_item(index: int, label: str, color: int, colorless: bool) -> tuple[str, str]:
    """Return the key of series ``index`` as (plain text, text with its ANSI colour): its glyph, then ``label``."""
    glyph = _key_glyph(index, colorless)
    plain = f"{glyph} {label}"
    return plain, plain if colorless else f"\x1b[38;5;{color}m{glyph}\x1b[0m {label}"


def _draw(plot: Any, xs: Sequence[float], ys: Sequence[float], marker: str = "braille") -> None:
    """Draw a line through the points with ``marker``, in the next colour of ``SERIES_COLORS``.

    Nothing is drawn when there are no points.
    """
    if not xs:
        return
    signal = plot.signal(list(xs), list(ys), marker=marker)
    signal.lines()
    plot.draw(signal)


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


def _legend_line(title: str, entries: Sequence[tuple[str, int]], width: int, colorless: bool) -> str:
    """Return one line with ``title`` and a key per (label, 256-colour code) entry, the title cut to fit ``width``.

    Without colours, each key shows the glyph of its series (see :func:`_key_glyph`).

    The key sits above the plot instead of in plotext's legend box, which would cover the data in small panels.
    """
    plain_parts = [title] if title else []
    coloured_parts = list(plain_parts)
    for index, (label, color) in enumerate(entries):
        plain, coloured = _key_item(index, label, color, colorless)
        plain_parts.append(plain)
        coloured_parts.append(coloured)
    if title and len("  ".join(plain_parts)) > width:
        # Cut the title, never the key, because the key is what tells the lines apart.
        keys = "  ".join(plain_parts[1 if title else 0 :])
        room = max(0, width - len(keys) - 2)
        cut_title = title if len(title) <= room else title[: max(0, room - 1)] + "…"
        coloured_parts[0] = cut_title
        if not cut_title:
            coloured_parts = coloured_parts[1:]
    return "  ".join(coloured_parts)


def _step_label(step: float) -> str:
    """Return a short label of a step number: 860, 4400, 12k, 1.5M."""
    if step < 10_000:
        return f"{step:.0f}"
    if step < 1_000_000:
        return f"{step / 1000:.3g}k"
    return f"{step / 1_000_000:.3g}M"


def _step_ticks(first: float, last: float, width: int) -> tuple[list[float], list[str]]:
    """Return evenly spaced x ticks between ``first`` and ``last`` with short step labels, about one per 8 columns."""
    count = max(2, min(6, width // 8))
    positions = [first + (last - first) * index / (count - 1) for index in range(count)]
    return positions, [_step_label(round(position)) for position in positions]


def _key_lines(
    title: str, entries: Sequence[tuple[str, int]], width: int, colorless: bool, extras: Sequence[str] = (), max_lines: int = 1
) -> list[str]:
    """Return the title and a key per (label, 256-colour code) entry, then ``extras``, packed into lines of ``width``.

    Items are never split across lines. When more than ``max_lines`` lines would be needed, the
    last line ends with "…" for the items left out.
    """
    items: list[tuple[str, str]] = []
    if title:
        cut = title if len(title) <= width else title[: width - 1] + "…"
        items.append((cut, cut))
    for index, (label, color) in enumerate(entries):
        room = width - len(_key_glyph(index, colorless)) - 1
        label = label if len(label) <= room else label[: max(room - 1, 0)] + "…"
        items.append(_key_item(index, label, color, colorless))
    items += [(extra, extra) for extra in extras]

    lines: list[tuple[str, str]] = []
    for plain, coloured in items:
        if lines and len(lines[-1][0]) + 2 + len(plain) <= width:
            lines[-1] = (lines[-1][0] + "  " + plain, lines[-1][1] + "  " + coloured)
        else:
            lines.append((plain, coloured))
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last_plain, last_coloured = lines[-1]
        if len(last_plain) + 2 <= width:
            lines[-1] = (last_plain, last_coloured + " …")
    return [coloured for _, coloured in lines] or [""]


def _aligned_ticks(upper: float, count: int, width: int) -> tuple[list[float], list[str]]:
    """Return ``count`` evenly spaced y ticks from 0 to ``upper``, with labels right-aligned to ``width``."""
    positions = [upper * index / (count - 1) for index in range(count)]
    labels = [f"{position:.2g}".rjust(width) for position in positions]
    return positions, labels


def render_comparison(
    hc: HistogramComparison | Mapping[str, Any],
    width: int = 80,
    height: int = 24,
    title: str | None = None,
    colorless: bool = False,
) -> str:
    """Plot real and generated normalised histograms as overlaid steps, with a generated/real ratio panel below.

    ``hc`` is a :class:`HistogramComparison` or its ``to_dict()`` form (as
    stored in ``validation.json``). The first line holds the title (by default
    the variable name and unit) and the colour key. The two panels share the
    x axis, whose ticks are drawn once, under the ratio panel. The ratio panel
    takes about a third of the height (at least 4 lines) and shows the
    y range 0-2, with ratios clipped to it, around the ideal line at 1. The
    plot is readable from 80x10 characters.
    """
    _check_size(width, height)
    if isinstance(hc, Mapping):
        from cmsgen.engine.validation.histograms import histogram_comparison_from_dict

        hc = histogram_comparison_from_dict(hc)
    plot_height = height - 1
    # A third of the height gives the ratio panel 5 rows of data at 80x24, so ratios of 0.5
    # and 1.5 get their own rows: with 3 rows, every ratio rounds to 0, 1 or 2.
    ratio_height = max(4, plot_height // 3)
    ratio_ticks = 5 if ratio_height >= 7 else 3
    main_height = plot_height - ratio_height
    edges = np.asarray(hc.edges, dtype=np.float64)
    x_range = (float(edges[0]), float(edges[-1]))
    peak = max([float(v) for v in (*hc.real, *hc.generated) if v is not None and math.isfinite(v)] or [1.0]) or 1.0
    main_ticks = 3 if main_height < 10 else 5
    # Both panels get y labels of the same width, so that their x axes line up.
    label_width = max(len(f"{peak * index / (main_ticks - 1):.2g}") for index in range(main_ticks))
    label_width = max(label_width, 3)
    with _LOCK:
        figure = _figure()
        figure.plot_size(width, plot_height)
        figure.subplots(2, 1)
        top = figure.subplot(1, 1)
        bottom = figure.subplot(2, 1)
        top.plot_size(width, main_height)
        bottom.plot_size(width, ratio_height)
        for panel in (top, bottom):
            panel.canvas("default")

        _draw(top, *_step(edges, hc.real), marker=_series_marker(0, colorless))
        _draw(top, *_step(edges, hc.generated), marker=_series_marker(1, colorless))
        top.ruler("x").lim(*x_range)
        top.ruler("x").ticks([], [])
        top.ruler("y").lim(0.0, peak * 1.05)
        top.ruler("y").ticks(*_aligned_ticks(peak, main_ticks, label_width))
        # Join the panels: no lower frame line on top, no upper frame line on the ratio panel.
        top.axes(False, axis=0, side=0)
        bottom.axes(False, axis=0, side=1)

        # The ideal line first, so that it takes the colour of "real" and the ratio that of "generated".
        _draw(bottom, list(x_range), [1.0, 1.0], marker=_series_marker(0, colorless))
        _draw(bottom, *_step(edges, np.clip(hc.ratio, 0.0, 2.0)), marker=_series_marker(1, colorless))
        bottom.ruler("y").lim(0.0, 2.0)
        bottom.ruler("y").ticks(*_aligned_ticks(2.0, ratio_ticks, label_width))
        bottom.ruler("x").lim(*x_range)
        plot = _finish(figure, plot_height, colorless)

    heading = title if title is not None else _axis_label(hc.name, hc.unit)
    key = [("real", SERIES_COLORS[0]), ("generated", SERIES_COLORS[1])]
    legend = _legend_line(heading, key, width, colorless)
    for note in ("  (normalised; lower panel: generated / real)", "  (lower: gen/real)"):
        if len(_ANSI.sub("", legend + note)) <= width:
            legend += note
            break
    return legend + "\n" + plot


def render_histogram(h: Histogram1D, width: int = 80, height: int = 24, title: str = "", colorless: bool = False) -> str:
    """Plot one histogram (counts per bin) as a step line with ``title`` on top."""
    _check_size(width, height)
    with _LOCK:
        figure = _figure()
        figure.plot_size(width, height)
        _draw(figure, *_step(np.asarray(h.edges), np.asarray(h.counts)))
        figure.ruler("x").lim(float(h.edges[0]), float(h.edges[-1]))
        # The counts axis starts at 0, so bin heights compare. plotext would start it at the lowest count.
        top = max((float(c) for c in np.asarray(h.counts) if math.isfinite(float(c))), default=1.0) or 1.0
        figure.ruler("y").lim(0.0, top * 1.05)
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
    """Plot named (step, y) series as lines, for loss curves. The x ticks are whole step numbers.

    The first line contains ``title`` and the colour key of the series, so no
    legend box covers the data. ``logy`` draws the y axis on a log scale and
    leaves out points with y <= 0. ``marker`` is an (x, y) point, such as the
    best epoch, drawn as a dot that the key calls "best". Non-finite points
    are left out.
    """
    _check_size(width, height)
    drawn: list[tuple[str, list[tuple[float, float]]]] = []
    for name, (xs, ys) in series.items():
        points = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(float(y)) and (not logy or y > 0)]
        if points:
            drawn.append((name, points))
    key = [(name, SERIES_COLORS[index % len(SERIES_COLORS)]) for index, (name, _) in enumerate(drawn)]
    show_marker = marker is not None and all(math.isfinite(v) for v in marker) and (not logy or marker[1] > 0)
    # Many losses, as the GAN logs, take a second key line rather than a line cut mid-name.
    legend = _key_lines(title, key, width, colorless, ["● best"] if show_marker else [], max_lines=2 if height >= 10 else 1)
    plot_height = height - len(legend)
    with _LOCK:
        figure = _figure()
        figure.plot_size(width, plot_height)
        for index, (_, points) in enumerate(drawn):
            _draw(figure, [p[0] for p in points], [p[1] for p in points], marker=_series_marker(index, colorless))
        if show_marker:
            assert marker is not None
            point = figure.signal([float(marker[0])], [float(marker[1])], marker="●")
            figure.draw(point)
        if logy:
            figure.ruler("y").scale("log")
        # The x values are steps, which thinning can average to fractions: the labels stay whole numbers.
        steps = [x for _, points in drawn for x, _ in points if math.isfinite(x)]
        if steps and max(steps) > min(steps):
            figure.ruler("x").ticks(*_step_ticks(min(steps), max(steps), width))
        plot = _finish(figure, plot_height, colorless)
    return "\n".join([*legend, plot])


def to_rich_text(plot: str) -> Text:
    """Wrap a rendered plot for a rich or Textual widget."""
    from rich.text import Text

    return Text.from_ansi(plot, no_wrap=True)
