"""Validation of generated events against real ones: statistics, histograms, physics checks.

The entry points are :func:`validate_arrays` (two feature matrices) and
:func:`validate_run` (a run directory, writing ``validation.json``).
"""

from cmsgen.engine.validation.histograms import (
    Histogram1D,
    HistogramComparison,
    compare_histograms,
    histogram_1d,
    shared_edges,
)
from cmsgen.engine.validation.report import (
    ValidationReport,
    ValidationSettings,
    load_report,
    report_to_markdown,
    summary_rows,
    validate_arrays,
    validate_run,
)
from cmsgen.engine.validation.univariate import MetricResult

__all__ = [
    "Histogram1D",
    "HistogramComparison",
    "MetricResult",
    "ValidationReport",
    "ValidationSettings",
    "compare_histograms",
    "histogram_1d",
    "load_report",
    "report_to_markdown",
    "shared_edges",
    "summary_rows",
    "validate_arrays",
    "validate_run",
]
