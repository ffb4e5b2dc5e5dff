"""A widget that shows a terminal plot sized to itself, and the plot helpers of the widgets.

Drawing goes through ``cmsgen.tui.plots``, the one module with plotext calls.
The helpers here only adapt the app's data to its functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cmsgen.tui import plots

log = logging.getLogger(__name__)

# (x values, y values) of each named line.
Series = Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]]

# A function that draws a plot into a (width, height) cell box and returns ANSI text.
PlotRenderer = Callable[[int, int], str]


def draw_lines(
    series: Series,
    width: int,
    height: int,
    title: str,
    logy: bool = False,
    marker: tuple[float, float] | None = None,
    colorless: bool = False,
) -> str:
    """Draw named lines into a ``width`` x ``height`` cell box and return ANSI text.

    ``marker`` is an optional (x, y) point drawn on top. ``colorless`` draws each line with its
    own glyph, for terminals without colours (``NO_COLOR``).
    """
    return plots.render_lines(series, width, height, title, logy=logy, marker=marker, colorless=colorless)


class PlotView(Widget):
    """Terminal plot that is drawn again, and cached, for each size the widget takes.

    Set ``renderer`` to a function of (width, height). Until then the widget shows
    ``message``. While it is too small, or when drawing fails, it shows a notice instead.
    """

    DEFAULT_CSS = """
    PlotView {
        height: 1fr;
        width: 1fr;
    }
    """

    # Screens may let a plot fill the screen (Screen.maximize), although it takes no focus.
    ALLOW_MAXIMIZE = True

    message: reactive[str] = reactive("", layout=False)

    def __init__(self, message: str = "", *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._renderer: PlotRenderer | None = None
        self._cache: dict[tuple[int, int], Text] = {}
        self.set_reactive(PlotView.message, message)

    @property
    def renderer(self) -> PlotRenderer | None:
        return self._renderer

    @renderer.setter
    def renderer(self, renderer: PlotRenderer | None) -> None:
        self._renderer = renderer
        self._cache.clear()
        self.refresh()

    def show_message(self, message: str) -> None:
        """Replace the plot by a one-line message (a placeholder or an error)."""
        self._renderer = None
        self._cache.clear()
        self.message = message
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if self._renderer is None:
            return Text(self.message)
        if width < plots.MIN_WIDTH or height < plots.MIN_HEIGHT:
            return Text(f"Too small for a plot: enlarge the terminal to at least {plots.MIN_WIDTH}x{plots.MIN_HEIGHT}.")
        key = (width, height)
        if key not in self._cache:
            try:
                self._cache[key] = plots.to_rich_text(self._renderer(width, height))
            except (ValueError, RuntimeError, TypeError) as error:
                log.exception("drawing a plot failed")
                return Text(f"The plot could not be drawn: {error}. Details are in the log file.")
        return self._cache[key]
