"""Feature sets: event selection and the float matrix a model trains on, plus observables.

A feature set turns chunks of canonical events into a matrix in physical
units (GeV, radians) and computes the physics observables used in validation
from such a matrix, so real and generated events are treated the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import vector

from cmsgen.engine.canonical import PDG_MASS
from cmsgen.engine.errors import ConfigError

vector.register_awkward()

COLLECTION_PREFIX = {"muons": "mu", "electrons": "el", "photons": "ph", "jets": "jet", "taus": "tau"}
COLLECTION_SPECIES = {"muons": "muon", "electrons": "electron", "photons": "photon", "taus": "tau"}
FIELD_KINDS = {"pt": "pt", "eta": "eta", "phi": "phi", "mass": "mass", "charge": "discrete"}


@dataclass(frozen=True)
class FeatureSet:
    """The N leading objects of one collection, described by a list of fields.

    Arguments:
        name: the feature-set name (``dimuon`` or ``leading-objects``).
        collection: canonical collection (``muons``, ``electrons``, ``jets``...).
        n_objects: how many leading objects (by pt) an event needs.
        fields: per-object fields (from pt, eta, phi, mass, charge).
        opposite_charge: keep only events whose two leading objects have opposite charges.
        charge_product: add the product of the two leading charges as a discrete column.
        min_pt: objects below this pt (GeV) are ignored before choosing the leading ones.
    """

    name: str
    collection: str
    n_objects: int
    fields: tuple[str, ...]
    opposite_charge: bool = False
    charge_product: bool = False
    min_pt: float = 0.0
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def prefix(self) -> str:
        return COLLECTION_PREFIX[self.collection]

    @property
    def columns(self) -> tuple[str, ...]:
        names = [f"{self.prefix}{i + 1}_{f}" for i in range(self.n_objects) for f in self.fields]
        if self.charge_product:
            names.append("charge_product")
        return tuple(names)

    @property
    def kinds(self) -> tuple[str, ...]:
        kinds = [FIELD_KINDS[f] for _ in range(self.n_objects) for f in self.fields]
        if self.charge_product:
            kinds.append("discrete")
        return tuple(kinds)

    @property
    def discrete_values(self) -> dict[str, tuple[float, ...]]:
        values: dict[str, tuple[float, ...]] = {}
        for column, kind in zip(self.columns, self.kinds):
            if kind == "discrete":
                values[column] = (-1.0, 1.0) if self.collection != "jets" or column == "charge_product" else (-1.0, 0.0, 1.0)
        return values

    @property
    def object_mass(self) -> float | None:
        """The PDG mass (GeV) assumed for observables when mass is not a feature, or None for jets."""
        species = COLLECTION_SPECIES.get(self.collection)
        return PDG_MASS.get(species) if species else None

    def selection_text(self) -> str:
        """Return the event selection in words, such as ``2 muons with finite pt, eta, phi, the two leading of opposite charge``."""
        text = f"{self.n_objects} {self.collection} with finite {', '.join(self.fields)}"
        if self.min_pt > 0:
            text += f" and pt above {self.min_pt:g} GeV"
        if self.opposite_charge and self.n_objects >= 2:
            text += ", the two leading of opposite charge"
        return text

    def required_fields(self) -> set[str]:
        needed = set(self.fields)
        if self.opposite_charge or self.charge_product:
            needed.add("charge")
        return needed | {"pt"}

    def missing_fields(self, available: set[str]) -> list[str]:
        """Return the canonical fields this feature set needs that are not in ``available``."""
        return sorted(self.required_fields() - available)

    def select(self, events: ak.Array) -> ak.Array:
        """Return the leading objects (sorted by pt, descending) of the selected events."""
        return self.select_with_mask(events)[0]

    def select_with_mask(self, events: ak.Array) -> tuple[ak.Array, np.ndarray]:
        """Return the leading objects of the selected events and the boolean mask of those events."""
        if self.collection not in events.fields:
            return ak.Array([]), np.zeros(len(events), dtype=bool)
        objects = events[self.collection]
        missing = self.missing_fields(set(objects.fields))
        if missing:
            raise ConfigError(
                f"Feature set {self.name!r} needs the {self.collection} field(s) {', '.join(missing)}, "
                "which this dataset neither stores nor can derive; see `cmsgen-tui report`."
            )
        finite = np.isfinite(objects.pt) & (objects.pt > self.min_pt)
        for name in self.fields:
            finite = finite & np.isfinite(objects[name])
        objects = objects[finite]
        objects = objects[ak.argsort(objects.pt, axis=1, ascending=False)]
        mask = ak.to_numpy(ak.num(objects, axis=1) >= self.n_objects)
        leading = objects[mask][:, : self.n_objects]
        if self.opposite_charge and self.n_objects >= 2:
            opposite = ak.to_numpy(leading.charge[:, 0] * leading.charge[:, 1] < 0)
            leading = leading[opposite]
            mask = mask.copy()
            mask[np.flatnonzero(mask)[~opposite]] = False
        return leading, mask

    def extract(self, events: ak.Array) -> np.ndarray:
        """Return the feature matrix [n_selected, len(columns)] (float64, physical units)."""
        return self.extract_with_mask(events)[0]

    def extract_with_mask(self, events: ak.Array) -> tuple[np.ndarray, np.ndarray]:
        """Return the feature matrix and the boolean mask of the selected events."""
        leading, mask = self.select_with_mask(events)
        return self._matrix(leading), mask

    def _matrix(self, leading: ak.Array) -> np.ndarray:
        if len(leading) == 0:
            return np.zeros((0, len(self.columns)))
        blocks = []
        for i in range(self.n_objects):
            for name in self.fields:
                blocks.append(np.asarray(ak.to_numpy(leading[name][:, i]), dtype=np.float64))
        if self.charge_product:
            blocks.append(np.asarray(ak.to_numpy(leading.charge[:, 0] * leading.charge[:, 1]), dtype=np.float64))
        return np.stack(blocks, axis=1)

    def count_selected(self, events: ak.Array, cache: dict[Any, Any] | None = None) -> int:
        """Return how many events pass the selection, without building the selected objects.

        It gives the same count as ``len(self.select(events))``. It works on the flat
        numpy values of the collection, where awkward stores them as plain lists of
        numbers, and falls back to awkward operations otherwise. Feature sets that
        count the same ``events`` can share a ``cache`` of the per-object cuts.
        """
        if self.collection not in events.fields:
            return 0
        objects = events[self.collection]
        needed = ["pt", *self.fields] + (["charge"] if self.opposite_charge and self.n_objects >= 2 else [])
        flat = flat_fields(objects, needed)
        if flat is None:
            return self._count_selected_awkward(objects)
        offsets, values = flat
        key = (self.collection, tuple(sorted(self.fields)), self.min_pt)
        if cache is not None and key in cache:
            good, n_good = cache[key]
        else:
            good = np.isfinite(values["pt"]) & (values["pt"] > self.min_pt)
            for name in self.fields:
                good &= np.isfinite(values[name])
            good_before = np.concatenate([[0], np.cumsum(good)])
            n_good = good_before[offsets[1:]] - good_before[offsets[:-1]]
            if cache is not None:
                cache[key] = good, n_good
        enough = n_good >= self.n_objects
        if not (self.opposite_charge and self.n_objects >= 2):
            return int(np.count_nonzero(enough))

        # The two leading good objects: the first position of the largest good pt, then of the
        # next largest, which is the order of a stable descending sort, as in select().
        lengths = np.diff(offsets)
        starts = offsets[:-1][lengths > 0]
        segment = np.repeat(np.arange(len(starts)), lengths[lengths > 0])
        ranked = np.where(good, values["pt"], -np.inf)
        first = _first_maximum(ranked, starts, segment)
        ranked[first] = -np.inf
        second = _first_maximum(ranked, starts, segment)
        charges = values["charge"]
        opposite = charges[first] * charges[second] < 0
        return int(np.count_nonzero(opposite & enough[lengths > 0]))

    def _count_selected_awkward(self, objects: ak.Array) -> int:
        good = np.isfinite(objects.pt) & (objects.pt > self.min_pt)
        for name in self.fields:
            good = good & np.isfinite(objects[name])
        enough = ak.to_numpy(ak.sum(good, axis=1)) >= self.n_objects
        if not (self.opposite_charge and self.n_objects >= 2):
            return int(np.count_nonzero(enough))

        # Objects that fail the cuts sort last, so the first two of an event with
        # enough good objects are its two leading good ones, in the order select() uses.
        order = ak.argsort(ak.where(good, objects.pt, -np.inf), axis=1, ascending=False, stable=True)
        charges = objects.charge[order][enough]
        return int(np.count_nonzero(ak.to_numpy(charges[:, 0] * charges[:, 1]) < 0))

    def _column(self, x: np.ndarray, name: str) -> np.ndarray:
        return x[:, self.columns.index(name)]

    def four_vectors(self, x: np.ndarray) -> list[Any]:
        """Return one vector.MomentumNumpy4D per leading object, from a feature matrix."""
        vectors = []
        for i in range(self.n_objects):
            stem = f"{self.prefix}{i + 1}_"
            if "mass" in self.fields:
                mass = self._column(x, stem + "mass")
            else:
                mass = np.full(len(x), self.object_mass or 0.0)
            vectors.append(
                vector.array(
                    {
                        "pt": self._column(x, stem + "pt"),
                        "eta": self._column(x, stem + "eta"),
                        "phi": self._column(x, stem + "phi"),
                        "mass": mass,
                    }
                )
            )
        return vectors

    def observables(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Return every column plus the pair observables (mass, pair_pt, pair_rapidity, delta_r, delta_phi).

        Pair observables need pt, eta and phi of at least two objects; units GeV and radians.
        """
        x = np.asarray(x, dtype=np.float64)
        result = {name: x[:, j] for j, name in enumerate(self.columns)}
        if self.n_objects >= 2 and {"pt", "eta", "phi"} <= set(self.fields):
            first, second = self.four_vectors(x)[:2]
            pair = first + second
            result["mass"] = np.asarray(pair.mass)
            result["pair_pt"] = np.asarray(pair.pt)
            result["pair_rapidity"] = np.asarray(pair.rapidity)
            result["delta_r"] = np.asarray(first.deltaR(second))
            result["delta_phi"] = np.asarray(first.deltaphi(second))
        return result

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "columns": list(self.columns), "kinds": list(self.kinds), "options": dict(self.options)}


def flat_fields(objects: ak.Array, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Return the offsets (from 0) and the flat numpy values of fields of a list-of-records array.

    Returns None unless every field is a plain numeric column under one list offset array,
    the form that canonical events have.
    """
    layout = ak.to_layout(objects)
    if not isinstance(layout, ak.contents.ListOffsetArray) or not isinstance(layout.content, ak.contents.RecordArray):
        return None
    offsets = np.asarray(layout.offsets.data, dtype=np.int64)
    record = layout.content
    values = {}
    for name in names:
        if name not in record.fields:
            return None
        content = record.content(name)
        if not isinstance(content, ak.contents.NumpyArray) or content.data.ndim != 1:
            return None
        values[name] = np.asarray(content.data)[offsets[0] : offsets[-1]]
    return offsets - offsets[0], values


def _first_maximum(key: np.ndarray, starts: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Return, per segment of ``key`` (non-empty, starting at ``starts``), the first position of its maximum."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    maximum = np.maximum.reduceat(key, starts)
    positions = np.flatnonzero(key == maximum[segment])
    owners = segment[positions]
    keep = np.ones(len(positions), dtype=bool)
    keep[1:] = owners[1:] != owners[:-1]
    return positions[keep]


# Feature sets name per-object columns ``<prefix><number>_<field>``, such as ``mu2_pt``.
OBJECT_COLUMN = re.compile(r"^(?P<prefix>[A-Za-z]+?)(?P<number>\d+)_(?P<field>\w+)$")


@dataclass
class ObjectColumns:
    """Column positions of one object in a feature matrix, such as the second muon (``mu2_*``)."""

    prefix: str
    number: int
    indices: dict[str, int] = field(default_factory=dict)


def group_object_columns(columns: Sequence[str]) -> list[ObjectColumns]:
    """Group ``<prefix><number>_<field>`` columns into objects, sorted by prefix and number.

    Columns that name no object, such as ``charge_product``, are left out.
    """
    objects: dict[tuple[str, int], ObjectColumns] = {}
    for position, name in enumerate(columns):
        match = OBJECT_COLUMN.match(name)
        if match is None:
            continue
        key = (match["prefix"], int(match["number"]))
        objects.setdefault(key, ObjectColumns(*key)).indices[match["field"]] = position
    return sorted(objects.values(), key=lambda item: (item.prefix, item.number))


FEATURE_SET_NAMES = ("dimuon", "leading-objects")


def get_feature_set(name: str, **options: Any) -> FeatureSet:
    """Build a feature set by name.

    ``dimuon`` options: ``opposite_charge`` (default True), ``min_pt`` (GeV, default 0).
    ``leading-objects`` options: ``collection`` (muons, electrons, photons, jets, taus;
    default muons), ``n`` (default 2), ``fields`` (default pt, eta, phi), ``min_pt``.
    Raises ConfigError naming the option for an unknown name or a bad value.
    """
    if name == "dimuon":
        allowed = {"opposite_charge", "min_pt"}
        _check_options(name, options, allowed)
        opposite = options.get("opposite_charge", True)
        if not isinstance(opposite, bool):
            raise ConfigError(f"data.options.opposite_charge = {opposite!r} is invalid; expected true or false.")
        return FeatureSet(
            name="dimuon",
            collection="muons",
            n_objects=2,
            fields=("pt", "eta", "phi"),
            opposite_charge=opposite,
            charge_product=True,
            min_pt=_min_pt(options),
            options=dict(options),
        )
    if name == "leading-objects":
        allowed = {"collection", "n", "fields", "min_pt", "opposite_charge"}
        _check_options(name, options, allowed)
        collection = options.get("collection", "muons")
        if collection not in COLLECTION_PREFIX:
            raise ConfigError(f"data.options.collection = {collection!r} is invalid; allowed: {', '.join(COLLECTION_PREFIX)}.")
        n = options.get("n", 2)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise ConfigError(f"data.options.n = {n!r} is invalid; expected an integer from 1 to 10.")
        fields = tuple(options.get("fields", ("pt", "eta", "phi")))
        bad = [f for f in fields if f not in FIELD_KINDS]
        if bad or "pt" not in fields or len(set(fields)) != len(fields):
            raise ConfigError(
                f"data.options.fields = {list(fields)!r} is invalid; use fields from {', '.join(FIELD_KINDS)}, "
                "each once, and include pt."
            )
        return FeatureSet(
            name="leading-objects",
            collection=collection,
            n_objects=n,
            fields=fields,
            opposite_charge=bool(options.get("opposite_charge", False)),
            min_pt=_min_pt(options),
            options=dict(options),
        )
    raise ConfigError(f"Feature set {name!r} is unknown; available: {', '.join(FEATURE_SET_NAMES)}.")


def _check_options(name: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"Option {unknown[0]!r} is not valid for feature set {name!r}; allowed: {', '.join(sorted(allowed))}.")


def _min_pt(options: dict[str, Any]) -> float:
    value = options.get("min_pt", 0.0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"data.options.min_pt = {value!r} is invalid; expected a number of GeV >= 0.")
    return float(value)
