"""Redraw time of a loss panel with 100,000 logged steps (two losses), at 80x24 and 200x50 cells.

Run: python benchmarks/tui_redraw.py. Prints the median time of one full draw
(thinning, smoothing when on, plotext build) per size and mode.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from cmsgen.tui.widgets.loss_panel import LossPanel, MetricHistory

N_STEPS = 100_000
REPEATS = 20


def main() -> None:
    history = MetricHistory()
    rng = np.random.default_rng(0)
    steps = np.arange(1, N_STEPS + 1)
    critic = -1.0 / np.sqrt(steps) + rng.normal(0, 0.05, N_STEPS)
    generator = 0.5 + rng.normal(0, 0.05, N_STEPS)
    history.add_rows({"step": int(s), "loss_critic": float(c), "loss_generator": float(g)} for s, c, g in zip(steps, critic, generator))
    panel = LossPanel("Losses", history)
    for width, height in ((80, 24), (200, 50)):
        for smooth in (False, True):
            panel.smooth = smooth
            times = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                panel.render_text(width, height)
                times.append(time.perf_counter() - start)
            print(f"{N_STEPS:,} points, {width}x{height}, smoothing {'on ' if smooth else 'off'}: median {statistics.median(times) * 1e3:.1f} ms per redraw")


if __name__ == "__main__":
    main()
