"""Display forms of a validation report: summary table rows and the Markdown logbook entry.

Both read a report dict (``ValidationReport.to_dict()`` or a loaded
``validation.json``), so a stored report renders like a fresh one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Version of the validation.json format (docs/validation-schema.md).
SCHEMA_VERSION = 1

# Figures shown in the summary table and the Markdown, with their display names.
FIGURE_LABELS = {
    "ks": "KS D",
    "w1": "W1",
    "chi2": "chi2/ndf",
    "jsd": "JSD [bit]",
    "separation_power": "separation",
    "fpd": "FPD",
    "kpd": "KPD",
    "classifier_auc": "classifier AUC",
    "correlation_frobenius": "|corr diff|_F",
}

# Section names of the summary rows, in report order.
SECTIONS = ("univariate", "multivariate", "physics", "memorisation")


def _format_number(value: float | None, error: float | None = None, p_value: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.4g}"
    if error is not None:
        text += f" ± {error:.2g}"
    if p_value is not None:
        text += f" (p={p_value:.2g})"
    return text


def _row(
    section: str, variable: str, figure: str, value: str, baseline: str, verdict: str, description: str = "", note: str = ""
) -> dict[str, str]:
    return {
        "section": section,
        "variable": variable,
        "figure": figure,
        "value": value,
        "baseline": baseline,
        "verdict": verdict,
        "description": description or variable,
        "note": note,
    }


def summary_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """Flatten a report dict (:meth:`ValidationReport.to_dict` or a loaded ``validation.json``) into table rows.

    Each row has ``section``, ``variable``, ``figure``, ``value``,
    ``baseline``, ``verdict``, ``description`` and ``note`` as display
    strings. The rows of the univariate figures come first, one per figure of
    each variable in report order. ``variable`` is short (a physicality check
    gives its name), and ``description`` is the long form for the Markdown.
    For a figure that was skipped or has no usable fit, ``value`` states that
    in a few words, and ``note`` gives the full reason ("" when there is none).
    """
    rows: list[dict[str, str]] = []
    for variable in report["univariate"]:
        name = variable["name"] + (f" [{variable['unit']}]" if variable["unit"] else "")
        for key, figure in variable["figures"].items():
            baseline = figure.get("baseline") or {}
            rows.append(
                _row(
                    "univariate",
                    name,
                    FIGURE_LABELS.get(key, key),
                    _format_number(figure["value"], figure["error"], figure["p_value"]),
                    _format_number(baseline.get("value"), baseline.get("error"), baseline.get("p_value")),
                    figure["verdict"],
                )
            )
    for key, figure in report["multivariate"].items():
        baseline = figure.get("baseline") or {}
        skipped = (figure.get("details") or {}).get("skipped")
        label = FIGURE_LABELS.get(key, key)
        rows.append(
            _row(
                "multivariate",
                "all columns",
                label,
                "skipped" if skipped else _format_number(figure["value"], figure["error"]),
                _format_number(baseline.get("value"), baseline.get("error")),
                figure["verdict"],
                note=f"{label}: {skipped}" if skipped else "",
            )
        )
    rows += _z_peak_rows(report["physics"]["z_peak"])
    for check in report["physics"]["physicality"]:
        rows.append(
            _row(
                "physics",
                check["name"],
                "failing",
                f"{check['generated']['fraction_failed']:.3%}",
                f"real {check['real']['fraction_failed']:.3%}",
                check["verdict"],
                check["description"],
            )
        )
    memorisation = report["memorisation"]
    compared = memorisation.get("median_ratio") is not None
    rows.append(
        _row(
            "memorisation",
            "train distance",
            "median ratio",
            _format_number(memorisation["median_ratio"], None, memorisation.get("p_value")) if compared else "skipped",
            "1 (held-out)" if compared else "n/a",
            memorisation["verdict"],
            "distance to the nearest training event, generated over held-out real (median ratio)",
        )
    )
    return rows


def _z_peak_rows(z_peak: Mapping[str, Any]) -> list[dict[str, str]]:
    """Return one row per fitted Z parameter, or one row with the reason when a fit is missing or not ok."""
    real_fit, generated_fit = z_peak.get("real"), z_peak.get("generated")
    note = f"Z peak: {z_peak['reason']}" if z_peak.get("reason") else ""
    if real_fit is None or generated_fit is None:
        return [_row("physics", "Z peak", "fit", "skipped", "n/a", z_peak["verdict"], note=note)]
    if real_fit["status"] != "ok" or generated_fit["status"] != "ok":
        real_mass = real_fit.get("mass") if real_fit["status"] == "ok" else None
        baseline = "real " + _format_number(real_mass, real_fit.get("mass_err")) if real_mass is not None else "n/a"
        short = ", ".join(
            f"{label} {fit['status'].replace('_', ' ')}"
            for label, fit in (("real", real_fit), ("generated", generated_fit))
            if fit["status"] != "ok"
        )
        return [_row("physics", "Z peak", "fit", short, baseline, z_peak["verdict"], note=note)]
    rows = []
    for name in ("mass", "gamma", "sigma"):
        pull = z_peak["pulls"].get(name)
        rows.append(
            _row(
                "physics",
                f"Z {name} [GeV]",
                f"pull {pull:+.2g}" if pull is not None else "no pull",
                _format_number(generated_fit.get(name), generated_fit.get(f"{name}_err")),
                "real " + _format_number(real_fit.get(name), real_fit.get(f"{name}_err")),
                # Reports saved before per-parameter verdicts have only the section's verdict.
                (z_peak.get("verdicts") or {}).get(name, z_peak["verdict"] if pull is not None else "skipped"),
                f"Z peak {name} [GeV], generated fit against real fit",
                note=note if name == "mass" else "",
            )
        )
    return rows


def _inputs_lines(report: Mapping[str, Any]) -> list[str]:
    """Return the Markdown list items that describe the inputs: events, selection, checkpoint, bins."""
    inputs = report["inputs"]
    lines = [
        f"- events: {inputs['n_generated']} generated versus {inputs['n_real']} real"
        + (f", {inputs['n_train']} training events for the memorisation check" if inputs.get("n_train") else ""),
    ]
    for line in selection_lines(inputs):
        lines.append(f"- {line}")
    if inputs.get("checkpoint"):
        lines.append(f"- checkpoint: {inputs['checkpoint']}" + _checkpoint_note(inputs))
    if inputs.get("bins") is not None:
        lines.append(f"- bins of the binned figures: {inputs['bins']}")
    return lines


def _checkpoint_note(inputs: Mapping[str, Any]) -> str:
    requested = inputs.get("checkpoint_requested")
    if requested and requested != inputs.get("checkpoint"):
        return f" (the run has no {requested} checkpoint)"
    return ""


def selection_lines(inputs: Mapping[str, Any]) -> list[str]:
    """Return one sentence per input file set of the files form: events read and removed by the selection."""
    lines = []
    for label, counts in (inputs.get("selection") or {}).items():
        text = f"{label}: {counts['n_read']} events read, {counts['n_removed_by_selection']} removed by the selection"
        if counts.get("n_duplicates_removed"):
            text += f", {counts['n_duplicates_removed']} repeated (run, event) pairs removed"
        lines.append(text + f", {counts['n_selected']} selected")
    return lines


def report_to_markdown(report: Mapping[str, Any]) -> str:
    """Render a report dict as a Markdown logbook entry: inputs, warnings, summary and one table of every figure."""
    inputs = report["inputs"]
    summary = report["summary"]
    lines = [
        f"# Validation of {inputs.get('run') or 'generated events'} ({inputs['feature_set']})",
        "",
        f"- created: {report['created']}",
        *_inputs_lines(report),
        f"- seed: {inputs['seed']}",
        (
            f"- verdict: **{summary['verdict']}** ({summary['pass']} pass, {summary['warn']} warn, "
            f"{summary['fail']} fail, {summary['skipped']} skipped)"
        ),
        "- baseline: the same figure on two random halves of the real sample",
    ]

    for warning in report.get("warnings") or []:
        lines.append(f"- **warning**: {warning['message']}")
    lines += [
        "",
        "| section | variable | figure | generated vs real | baseline | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary_rows(report):
        cells = [row[key].replace("|", "\\|") for key in ("section", "description", "figure", "value", "baseline", "verdict")]
        lines.append("| " + " | ".join(cells) + " |")

    notes = [row["note"] for row in summary_rows(report) if row["note"]]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    memorisation = report["memorisation"]
    lines += ["", f"Memorisation: {memorisation.get('reason', '')}", ""]
    return "\n".join(lines)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a ``validation.json`` file (or a run directory that contains one) as a dict."""
    from cmsgen.engine.errors import DataNotFoundError, UnreadableFileError

    path = Path(path)
    if path.is_dir():
        path = path / "validation.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} not found; run `cmsgen-tui validate` on the run first") from None
    except (OSError, ValueError) as error:
        raise UnreadableFileError(f"{path} cannot be read as a validation report: {error}") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise UnreadableFileError(f"{path} is not a validation report of schema version {SCHEMA_VERSION}")
    return data
