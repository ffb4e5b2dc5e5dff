"""Real plotext rendering through the adapter in cmsgen.tui.plots."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cmsgen.engine.validation import compare_histograms, histogram_1d
from cmsgen.tui import plots

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def comparison():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    return compare_histograms("mass", rng.normal(91, 3, 4000), rng.normal(91.5, 3.2, 4000), np.linspace(60, 120, 41), "GeV")


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (60, 16)])
def test_comparison_has_requested_size(comparison, width: int, height: int) -> None:  # type: ignore[no-untyped-def]
    text = plots.render_comparison(comparison, width, height)
    lines = text.split("\n")
    assert len(lines) == height
    assert max(len(ANSI.sub("", line)) for line in lines) <= width


def test_comparison_shows_title_and_ratio(comparison) -> None:  # type: ignore[no-untyped-def]
    text = plots.render_comparison(comparison, 80, 24, colorless=True)
    assert "mass [GeV]" in text
    assert "generated / real" in text
    assert "\x1b[" not in text


def test_comparison_from_report_dict(comparison) -> None:  # type: ignore[no-untyped-def]
    text = plots.render_comparison(comparison.to_dict(), 80, 24, title="stored mass", colorless=True)
    assert "stored mass" in text
    assert len(text.split("\n")) == 24


def test_histogram_has_title_and_size() -> None:
    histogram = histogram_1d(np.random.default_rng(1).exponential(20.0, 3000), bins=40)
    text = plots.render_histogram(histogram, 70, 18, "Muon_pt", colorless=True)
    assert len(text.split("\n")) == 18
    assert "Muon_pt" in text
    assert text.strip()


def test_lines_logy_with_marker() -> None:
    steps = list(range(1, 101))
    series = {"loss_critic": (steps, [10.0 / s for s in steps]), "loss_generator": (steps, [5.0 / s + 0.1 for s in steps])}
    text = plots.render_lines(series, 80, 20, "losses", logy=True, marker=(40.0, 0.25), colorless=True)
    assert len(text.split("\n")) == 20
    assert "losses" in text
    assert "best" in text
    assert "loss_critic" in text


def test_lines_skip_nonpositive_on_log_scale() -> None:
    text = plots.render_lines({"w1": ([0, 1, 2], [0.0, -1.0, 2.0])}, 60, 12, "w1", logy=True, colorless=True)
    assert len(text.split("\n")) == 12


def test_too_small_plot_rejected(comparison) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="too small"):
        plots.render_comparison(comparison, 10, 4)


def test_rich_text_keeps_lines(comparison) -> None:  # type: ignore[no-untyped-def]
    text = plots.to_rich_text(plots.render_comparison(comparison, 80, 24))
    assert len(text.plain.split("\n")) == 24
    assert "mass" in text.plain


def test_comparison_key_matches_line_colours(comparison) -> None:  # type: ignore[no-untyped-def]
    lines = plots.render_comparison(comparison, 80, 24).split("\n")
    real, generated = (f"\x1b[38;5;{code}m" for code in plots.SERIES_COLORS[:2])

    assert real in lines[0]
    assert generated in lines[0]
    body = "\n".join(lines[1:])
    assert real in body
    assert generated in body


def test_small_comparison_keeps_data_rows(comparison) -> None:  # type: ignore[no-untyped-def]
    lines = plots.render_comparison(comparison, 78, 11, colorless=True).split("\n")
    # Real is drawn in braille and generated with dots, because the plot has no colours.
    data_rows = [line for line in lines[1:] if any("\u2800" <= char <= "\u28ff" or char == "•" for char in line)]

    assert lines[0].startswith("mass [GeV]  ⠤⠤ real  •• generated")
    assert len(data_rows) >= 6
    assert sum(line.lstrip().startswith(("1┤", "2┤")) for line in lines) == 2


def test_lines_key_instead_of_legend_box() -> None:
    steps = list(range(1, 51))
    series = {"loss_critic": (steps, [1.0 / s for s in steps]), "loss_generator": (steps, [0.5] * 50)}
    lines = plots.render_lines(series, 60, 10, "Losses", marker=(20.0, 0.05), colorless=True).split("\n")

    assert lines[0] == "Losses  ⠤⠤ loss_critic  •• loss_generator  ● best"
    assert not any("loss_critic" in line for line in lines[1:])


def test_plots_leave_background_alone(comparison) -> None:  # type: ignore[no-untyped-def]
    histogram = histogram_1d(np.random.default_rng(2).normal(0.0, 1.0, 500), bins=20)
    texts = [
        plots.render_comparison(comparison, 80, 24),
        plots.render_histogram(histogram, 60, 12, "x"),
        plots.render_lines({"loss": ([1, 2, 3], [3.0, 2.0, 1.0])}, 60, 12, "loss"),
    ]

    for text in texts:
        assert "\x1b[48;" not in text


def test_comparison_panels_share_x_axis() -> None:
    rng = np.random.default_rng(3)
    # Densities near 0.05 give five-character tick labels such as "0.047".
    wide = compare_histograms("pt", rng.exponential(20.0, 4000), rng.exponential(21.0, 4000), np.linspace(0, 100, 41), "GeV")
    lines = plots.render_comparison(wide, 80, 24, colorless=True).split("\n")
    axis_columns = {line.index("┤") for line in lines if "┤" in line}

    assert len(axis_columns) == 1


def test_colorless_comparison_distinct_glyphs(comparison) -> None:  # type: ignore[no-untyped-def]
    key, *body = plots.render_comparison(comparison, 80, 24, colorless=True).split("\n")
    assert "⠤⠤ real" in key
    assert "•• generated" in key
    assert any("•" in line for line in body)
    assert any(re.search("[\u2801-\u28ff]", line) for line in body)


def test_coloured_comparison_braille_only(comparison) -> None:  # type: ignore[no-untyped-def]
    text = ANSI.sub("", plots.render_comparison(comparison, 80, 24))
    assert "•" not in text
    assert "━ real" in text


def test_ratio_panel_has_half_steps(comparison) -> None:  # type: ignore[no-untyped-def]
    lines = plots.render_comparison(comparison, 80, 24, colorless=True).split("\n")
    ratio_labels = [line.split("┤")[0].strip() for line in lines if "┤" in line][-5:]

    assert ratio_labels == ["2", "1.5", "1", "0.5", "0"]


def test_histogram_counts_start_at_zero() -> None:
    histogram = histogram_1d(np.random.default_rng(4).uniform(-2.4, 2.4, 3000), bins=30)
    lines = plots.render_histogram(histogram, 60, 12, "Muon_eta", colorless=True).split("\n")
    labels = [line.split("┤")[0].strip() for line in lines if "┤" in line]

    assert float(labels[-1]) == 0.0


def test_loss_steps_label_whole_numbers() -> None:
    # Thinned steps are averages of groups of steps, so they can be fractions.
    steps = [10.5 * index for index in range(1, 200)]
    lines = plots.render_lines({"loss": (steps, [1.0 / s for s in steps])}, 48, 12, "Losses", colorless=True).split("\n")
    labels = lines[-1].split()

    assert labels[0] == "10"
    assert labels[-1] == "2090"
    assert all(label.isdigit() for label in labels)


def test_many_losses_keep_key_names_whole() -> None:
    steps = list(range(1, 100))
    names = ["loss_critic", "loss_generator", "gradient_penalty", "wasserstein", "mmd"]
    series = {name: (steps, [1.0 / s + index for s in steps]) for index, name in enumerate(names)}
    lines = plots.render_lines(series, 60, 12, "", marker=(40.0, 1.02), colorless=True).split("\n")

    assert len(lines) == 12
    key = " ".join(lines[:2])
    for name in names:
        assert name in key
    assert "● best" in key
    assert all(len(line) <= 60 for line in lines)
