"""Streaming accumulators for the missing-field report, updated one chunk at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from cmsgen.engine.canonical import CrossCheck

# Values that legacy ntuples use for "not set".
SENTINELS = np.array([-99.0, -999.0, -9999.0, -99999.0, -999999.0])


def _flat(values: ak.Array | np.ndarray) -> tuple[np.ndarray, int]:
    """Return the flattened values, in their own numeric dtype, and the number of nulls."""
    if isinstance(values, np.ndarray):
        return values, 0
    layout = ak.to_layout(values)
    # Canonical fields are plain numbers or one list level of them: read those without a copy.
    if isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 1:
        return np.asarray(layout.data), 0
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        offsets = np.asarray(layout.offsets.data)
        return np.asarray(layout.content.data)[offsets[0] : offsets[-1]], 0
    flat = ak.flatten(values, axis=None)
    nulls = int(ak.sum(ak.is_none(flat)))
    if nulls:
        flat = ak.drop_none(flat)
    return np.asarray(ak.to_numpy(flat), dtype=np.float64), nulls


def out_of_range_rule(collection: str, name: str) -> tuple[str, Any] | None:
    """Return the rule text and a function flagging out-of-range finite values, or None."""
    if name in ("pt",):
        return "pt < 0", lambda v: v < 0
    if name == "phi":
        return "|phi| > pi", lambda v: np.abs(v) > np.pi + 1e-6
    if name == "eta":
        return "|eta| > 10", lambda v: np.abs(v) > 10
    if name == "energy":
        return "energy < 0", lambda v: v < 0
    if name == "mass":
        return "mass < 0 (negative mass squared)", lambda v: v < 0
    if name == "charge" and collection in ("muons", "electrons", "taus"):
        return "charge not in {-1, +1}", lambda v: (v != -1) & (v != 1)
    if name == "charge" and collection == "photons":
        return "charge != 0", lambda v: v != 0
    return None


@dataclass
class FieldQuality:
    """Counts of bad values of one canonical field."""

    collection: str
    field: str
    n: int = 0
    null: int = 0
    nan: int = 0
    inf: int = 0
    sentinel: int = 0
    out_of_range: int = 0
    rule: str = ""

    def update(self, values: ak.Array | np.ndarray) -> None:
        flat, nulls = _flat(values)
        self.null += nulls
        self.n += len(flat) + nulls
        # Bad values are rare, so each count looks only at the few candidates of a cheap first test.
        finite = np.isfinite(flat)
        all_finite = bool(finite.all())
        if not all_finite:
            not_finite = flat[~finite]
            n_nan = int(np.count_nonzero(np.isnan(not_finite)))
            self.nan += n_nan
            self.inf += len(not_finite) - n_nan
        low = flat <= SENTINELS.max()
        sentinels = flat[low] if low.any() else flat[:0]
        sentinels = sentinels[np.isin(sentinels, SENTINELS)]
        self.sentinel += len(sentinels)
        rule = out_of_range_rule(self.collection, self.field)
        if rule:
            self.rule = rule[0]
            flagged = rule[1](flat)
            if not all_finite:
                flagged &= finite
            self.out_of_range += int(np.count_nonzero(flagged)) - int(np.count_nonzero(rule[1](sentinels)))

    def merge(self, other: FieldQuality) -> None:
        """Add the counts of ``other``, the same field counted on other events."""
        self.n += other.n
        self.null += other.null
        self.nan += other.nan
        self.inf += other.inf
        self.sentinel += other.sentinel
        self.out_of_range += other.out_of_range
        self.rule = self.rule or other.rule

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "field": self.field,
            "n": self.n,
            "null": self.null,
            "nan": self.nan,
            "inf": self.inf,
            "sentinel": self.sentinel,
            "out_of_range": self.out_of_range,
            "rule": self.rule,
        }


@dataclass
class CrossCheckTotals:
    """Running totals of one stored-versus-derived comparison."""

    check: str
    collection: str
    tolerance: float
    n_compared: int = 0
    n_disagree: int = 0
    max_relative_difference: float = 0.0

    def update(self, check: CrossCheck) -> None:
        both = np.isfinite(check.stored) & np.isfinite(check.derived) & ~np.isin(check.stored, SENTINELS)
        stored = check.stored[both]
        derived = check.derived[both]
        difference = np.abs(stored - derived)
        if "phi" in check.name:
            difference = np.abs(np.angle(np.exp(1j * (stored - derived))))
        relative = difference / np.maximum(np.abs(stored), 1.0)
        self.n_compared += len(stored)
        self.n_disagree += int((relative > self.tolerance).sum())
        if len(relative):
            self.max_relative_difference = max(self.max_relative_difference, float(relative.max()))

    def merge(self, other: CrossCheckTotals) -> None:
        """Add the totals of ``other``, the same comparison made on other events."""
        self.n_compared += other.n_compared
        self.n_disagree += other.n_disagree
        self.max_relative_difference = max(self.max_relative_difference, other.max_relative_difference)

    def to_dict(self) -> dict[str, Any]:
        fraction = self.n_disagree / self.n_compared if self.n_compared else 0.0
        return {
            "check": self.check,
            "collection": self.collection,
            "n_compared": self.n_compared,
            "n_disagree": self.n_disagree,
            "fraction_disagree": fraction,
            "tolerance": self.tolerance,
            "max_relative_difference": self.max_relative_difference,
        }


@dataclass
class DuplicateFinder:
    """Collects (run, event) pairs to find events that appear in several rows.

    While run numbers fit in 31 bits and event numbers in 32, each row is kept
    as one int64 key (run << 32 | event), which halves the memory of two columns
    and sorts in place. Larger numbers switch the finder to (run, event) rows.
    """

    keys: list[np.ndarray] = field(default_factory=list)
    pairs: list[np.ndarray] = field(default_factory=list)
    checked: bool = False

    def update(self, events: ak.Array) -> None:
        if "run" not in events.fields or "event" not in events.fields:
            return
        self.checked = True
        runs = np.asarray(ak.to_numpy(events.run), dtype=np.int64)
        numbers = np.asarray(ak.to_numpy(events.event), dtype=np.int64)
        fits = len(runs) == 0 or (runs.min() >= 0 and runs.max() < 2**31 and numbers.min() >= 0 and numbers.max() < 2**32)
        if fits and not self.pairs:
            self.keys.append((runs << 32) | numbers)
            return
        if self.keys:
            self.pairs.extend(np.stack([key >> 32, key & 0xFFFFFFFF], axis=1) for key in self.keys)
            self.keys.clear()
        self.pairs.append(np.stack([runs, numbers], axis=1))

    def merge(self, other: DuplicateFinder) -> None:
        """Add the rows collected by ``other``, so that duplicates across both are found."""
        self.checked = self.checked or other.checked
        if other.pairs or self.pairs:
            self.pairs.extend(np.stack([key >> 32, key & 0xFFFFFFFF], axis=1) for key in self.keys + other.keys)
            self.keys = []
            self.pairs.extend(other.pairs)
        else:
            self.keys.extend(other.keys)

    def to_dict(self) -> dict[str, Any]:
        if not self.checked:
            return {"checked": False, "n_duplicates": 0, "n_events_checked": 0, "examples": []}
        if self.pairs:
            rows = np.concatenate(self.pairs)
            unique, counts = np.unique(rows, axis=0, return_counts=True)
            n_rows = len(rows)
            n_duplicates = int((counts[counts > 1] - 1).sum())
            repeated = unique[counts > 1]
        else:
            keys = np.concatenate(self.keys) if self.keys else np.zeros(0, dtype=np.int64)
            self.keys = []
            keys.sort()
            n_rows = len(keys)
            # After sorting, a row equal to its predecessor repeats an earlier (run, event).
            repeats = keys[1:] == keys[:-1]
            n_duplicates = int(np.count_nonzero(repeats))
            repeated_keys = np.unique(keys[1:][repeats])
            repeated = np.stack([repeated_keys >> 32, repeated_keys & 0xFFFFFFFF], axis=1)
        return {
            "checked": True,
            "n_events_checked": int(n_rows),
            "n_duplicates": n_duplicates,
            "n_repeated_keys": int(len(repeated)),
            "examples": [{"run": int(r), "event": int(e)} for r, e in repeated[:5]],
        }


@dataclass
class Multiplicity:
    """Histogram of the number of objects per event of each collection."""

    counts: dict[str, np.ndarray] = field(default_factory=dict)

    def update(self, events: ak.Array, collections: tuple[str, ...]) -> None:
        for name in collections:
            if name not in events.fields:
                continue
            self._add(name, np.bincount(np.asarray(ak.to_numpy(ak.num(events[name], axis=1)), dtype=np.int64)))

    def merge(self, other: Multiplicity) -> None:
        """Add the histograms of ``other``, counted on other events."""
        for name, histogram in other.counts.items():
            self._add(name, histogram)

    def _add(self, name: str, histogram: np.ndarray) -> None:
        previous = self.counts.get(name, np.zeros(0, dtype=np.int64))
        size = max(len(previous), len(histogram))
        self.counts[name] = np.pad(previous, (0, size - len(previous))) + np.pad(histogram, (0, size - len(histogram)))

    def to_dict(self) -> dict[str, Any]:
        result = {}
        for name, histogram in self.counts.items():
            total = int(histogram.sum())
            mean = float((np.arange(len(histogram)) * histogram).sum() / total) if total else 0.0
            result[name] = {
                "events": total,
                "empty": int(histogram[0]) if len(histogram) else 0,
                "mean": mean,
                "histogram": {str(k): int(v) for k, v in enumerate(histogram) if v},
            }
        return result
