"""The missing-field report: what a dataset holds, what is missing, derived, broken or unreadable."""

from cmsgen.engine.report.builder import SCHEMA_VERSION, Report, build_report, np_json_default
from cmsgen.engine.report.markdown import render_markdown

__all__ = ["SCHEMA_VERSION", "Report", "build_report", "np_json_default", "render_markdown"]
