"""Validation of generated events against real ones: statistics, histograms, physics checks.

The entry points are :func:`validate_arrays` (two feature matrices) and
:func:`validate_run` (a run directory, writing ``validation.json``).

The names below are imported from their modules on first use, so that reading a stored
report (``summary``, ``histograms``) does not import torch and scipy, which the
statistics modules need.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> module of this package that defines it.
_EXPORTS = {
    "Histogram1D": "histograms",
    "HistogramComparison": "histograms",
    "compare_histograms": "histograms",
    "histogram_1d": "histograms",
    "shared_edges": "histograms",
    "ValidationReport": "report",
    "ValidationSettings": "report",
    "validate_arrays": "report",
    "validate_run": "report",
    "load_report": "summary",
    "report_to_markdown": "summary",
    "summary_rows": "summary",
    "MetricResult": "univariate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
