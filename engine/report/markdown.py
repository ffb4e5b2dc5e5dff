"""Render a report as Markdown for a logbook."""

from __future__ import annotations

from typing import Any

NO_EVENTS = "No events were read, so nothing was counted."


def _table(headers: list[str], rows: list[list[Any]], empty: str = "(none)") -> list[str]:
    if not rows:
        return [empty, ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    lines.append("")
    return lines


def render_markdown(report: Any) -> str:
    """Return the report as a Markdown document."""
    data = report.to_dict() if hasattr(report, "to_dict") else report
    lines = ["# Missing-field report", ""]
    layout = data["layout"]
    lines += [f"- Layout: **{layout['name'] or 'none'}**: {layout['reason']}", f"- Events read: {data['n_events']:,}", ""]
    # The sections counted on the events state why they are empty when no event was read.
    counted_empty = NO_EVENTS if data["n_events"] == 0 else "(none)"

    lines += ["## Files", ""]
    lines += _table(
        ["file", "format", "layout", "entries", "readable", "problem"],
        [[f["path"], f["format"], f["layout"] or "-", f["entries"], "yes" if f["readable"] else "no", f["error"] or ""] for f in data["dataset"]["files"]],
    )

    lines += ["## Canonical fields", ""]
    lines += _table(
        ["collection", "field", "status", "from", "how"],
        [[r["collection"], r["field"], r["status"], ", ".join(r["source"][:4]) + (" ..." if len(r["source"]) > 4 else ""), r["derivation"]] for r in data["fields"]],
        "No known layout matches the branch names, so the report has no canonical fields." if layout["name"] is None else "(none)",
    )

    lines += ["## Value quality", ""]
    lines += _table(
        ["collection", "field", "values", "null", "NaN", "inf", "sentinel", "out of range", "rule"],
        [[q["collection"], q["field"], q["n"], q["null"], q["nan"], q["inf"], q["sentinel"], q["out_of_range"], q["rule"]] for q in data["quality"]],
        counted_empty,
    )

    lines += ["## Stored against derived", ""]
    lines += _table(
        ["check", "collection", "compared", "disagree", "tolerance"],
        [[c["check"], c["collection"], c["n_compared"], c["n_disagree"], c["tolerance"]] for c in data["consistency"]],
        counted_empty,
    )

    duplicates = data["duplicates"]

    lines += ["## Duplicate events", ""]
    if data["n_events"] == 0:
        lines += [NO_EVENTS, ""]
    elif duplicates["checked"]:
        lines += [f"{duplicates['n_duplicates']} rows repeat a (run, event) pair already seen, out of {duplicates['n_events_checked']:,}.", ""]
    else:
        lines += ["Not checked: the layout stores no run and event numbers.", ""]

    lines += ["## Multiplicities", ""]
    lines += _table(
        ["collection", "events", "empty", "mean", "histogram"],
        [[name, m["events"], m["empty"], f"{m['mean']:.2f}", ", ".join(f"{k}:{v}" for k, v in m["histogram"].items())] for name, m in data["multiplicities"].items()],
        counted_empty,
    )

    lines += ["## Unreadable", ""]
    unreadable = data["unreadable"]
    lines += _table(
        ["file", "branch", "reason", "route"],
        [[u["file"], u["branch"] or "(whole file)", u["reason"], u.get("route", "")] for u in unreadable[:200]],
    )
    if len(unreadable) > 200:
        lines += [f"... and {len(unreadable) - 200} more in the JSON report.", ""]

    lines += ["## Drift between files", ""]
    lines += _table(
        ["file", "missing", "extra", "type changes"],
        [[d["file"], ", ".join(d["missing"]), ", ".join(d["extra"]), ", ".join(t["branch"] for t in d["type_changes"])] for d in data["drift"]],
    )

    if data["cleaning"]:
        lines += ["## Cleaning", ""]
        lines += [f"- {c['file']}: {c['action']}" for c in data["cleaning"]] + [""]

    if data["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in data["notes"]] + [""]

    lines += ["## Verdict", ""]
    lines += _table(
        ["feature set", "trainable", "events", "reason"],
        [[v["feature_set"], "yes" if v["trainable"] else "no", v["n_events"], v["reason"]] for v in data["verdict"]],
    )
    return "\n".join(lines)
