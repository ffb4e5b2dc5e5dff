"""Build canonical events from the raw branches of one layout, deriving what is not stored.

The canonical event is an awkward record array with optional fields ``run``,
``luminosityBlock`` and ``event`` (int64). Its collections ``muons``,
``electrons``, ``photons``, ``jets`` and ``taus`` are
``var * {pt, eta, phi, mass, charge}`` in GeV and radians, with an integer
charge, and ``met`` is ``{pt, phi}``.

Derivations use scikit-hep ``vector``: pt, eta and phi from px, py, pz; mass
from E and p; the mass of a species from the PDG; charge from a PDG id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import awkward as ak
import numpy as np
import vector

from cmsgen.engine.layouts.registry import CANONICAL_FIELDS, CollectionSpec, FieldSpec, Layout

vector.register_awkward()

# PDG masses in GeV (Particle Data Group 2024).
PDG_MASS = {"muon": 0.1056583755, "electron": 0.00051099895, "tau": 1.77686, "photon": 0.0}
PDG_ID_SPECIES = {11: "electrons", 13: "muons", 15: "taus", 22: "photons"}
CANONICAL_COLLECTIONS = ("muons", "electrons", "photons", "jets", "taus")

RawKey = tuple[str | None, str]  # (tree path or None for the main tree, branch name)


@dataclass(frozen=True)
class FieldStatus:
    """The origin of one canonical field of one collection in a file: stored, derived or missing."""

    collection: str
    field: str
    status: str  # "present", "derived" or "missing"
    source: tuple[str, ...] = ()
    derivation: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "collection": self.collection,
            "field": self.field,
            "status": self.status,
            "source": list(self.source),
            "derivation": self.derivation,
        }


@dataclass
class CrossCheck:
    """A stored value compared with the same value derived from other stored fields."""

    name: str
    collection: str
    stored: np.ndarray
    derived: np.ndarray
    relative_tolerance: float


@dataclass
class CanonicalChunk:
    """One chunk of canonical events plus the stored-versus-derived comparisons."""

    events: ak.Array
    cross_checks: list[CrossCheck] = field(default_factory=list)


def _available(spec: FieldSpec, collection: CollectionSpec, tree: str | None, branches: Mapping[str | None, set[str]]) -> bool:
    names = branches.get(tree, set())
    if collection.kind == "flat":
        return all(spec.expand(i) in names for i in collection.indices)
    return spec.branch in names


def plan_collection(
    collection: CollectionSpec, branches: Mapping[str | None, set[str]]
) -> tuple[dict[str, FieldSpec], list[FieldStatus]]:
    """Return the stored fields available in a file and the status of every canonical field."""
    stored = {name: spec for name, spec in collection.fields.items() if _available(spec, collection, collection.tree, branches)}
    targets = [collection.name] if not collection.split_by_pdg_id else ["muons", "electrons"]
    statuses = []
    for target in targets:
        species = collection.species or {"muons": "muon", "electrons": "electron"}.get(target)
        for name in CANONICAL_FIELDS:
            statuses.append(_field_status(target, name, stored, collection, species))
    return stored, statuses


def _source(collection: CollectionSpec, stored: dict[str, FieldSpec], *names: str) -> tuple[str, ...]:
    result = []
    for name in names:
        spec = stored[name]
        result.extend(spec.expand(i) for i in collection.indices) if collection.kind == "flat" else result.append(spec.branch)
    return tuple(result)


def _field_status(target: str, name: str, stored: dict[str, FieldSpec], collection: CollectionSpec, species: str | None) -> FieldStatus:
    has = set(stored)
    if name in has:
        return FieldStatus(target, name, "present", _source(collection, stored, name))
    cartesian = {"px", "py", "pz"} <= has
    if name == "pt" and {"px", "py"} <= has:
        return FieldStatus(target, name, "derived", _source(collection, stored, "px", "py"), "pt = hypot(px, py) (vector)")
    if name in ("eta", "phi") and cartesian:
        return FieldStatus(target, name, "derived", _source(collection, stored, "px", "py", "pz"), f"{name} from px, py, pz (vector)")
    if name == "mass":
        if "energy" in has and cartesian:
            return FieldStatus(target, name, "derived", _source(collection, stored, "energy", "px", "py", "pz"), "mass = sqrt(E^2 - p^2) (vector)")
        if species in PDG_MASS:
            return FieldStatus(target, name, "derived", (), f"PDG mass of the {species} ({PDG_MASS[species]:.6g} GeV)")
    if name == "charge":
        if "pdg_id" in has:
            return FieldStatus(target, name, "derived", _source(collection, stored, "pdg_id"), "charge = -sign(PDG id) for leptons")
        if species == "photon":
            return FieldStatus(target, name, "derived", (), "photons are neutral (charge 0)")
    return FieldStatus(target, name, "missing")


def _read_field(spec: FieldSpec, collection: CollectionSpec, raw: Mapping[RawKey, ak.Array], n_events: int) -> ak.Array:
    tree = collection.tree
    if collection.kind == "flat":
        columns = [np.asarray(ak.to_numpy(raw[(tree, spec.expand(i))]), dtype=np.float64) for i in collection.indices]
        values = ak.from_regular(ak.Array(np.stack(columns, axis=1)))
    else:
        values = ak.values_astype(raw[(tree, spec.branch)], np.float64)
        if spec.first:
            values = ak.firsts(values)
    if spec.scale != 1.0:
        values = values * spec.scale
    return values


def build_collection(
    collection: CollectionSpec,
    stored: dict[str, FieldSpec],
    raw: Mapping[RawKey, ak.Array],
    n_events: int,
    cross_checks: list[CrossCheck],
) -> dict[str, ak.Array]:
    """Build the canonical collection(s) of one layout collection for one chunk."""
    values = {name: _read_field(spec, collection, raw, n_events) for name, spec in stored.items()}
    if collection.split_by_pdg_id and "pdg_id" in values:
        pdg = abs(values["pdg_id"])
        result = {}
        for code, target in ((13, "muons"), (11, "electrons")):
            mask = pdg == code
            subset = {name: array[mask] for name, array in values.items()}
            result[target] = _complete(subset, target, {"muons": "muon", "electrons": "electron"}[target], cross_checks)
        return result
    return {collection.name: _complete(values, collection.name, collection.species, cross_checks)}


def _complete(values: dict[str, ak.Array], name: str, species: str | None, cross_checks: list[CrossCheck]) -> ak.Array:
    """Derive the missing canonical fields of one collection and record stored-versus-derived checks."""
    has = set(values)
    result: dict[str, ak.Array] = {}
    cartesian = None
    if {"px", "py", "pz"} <= has:
        components = {"px": values["px"], "py": values["py"], "pz": values["pz"]}
        if "energy" in has:
            components["E"] = values["energy"]
        cartesian = vector.zip(components)
    elif {"px", "py"} <= has:
        cartesian = vector.zip({"px": values["px"], "py": values["py"]})

    for field_name in ("pt", "eta", "phi"):
        derived = None
        if cartesian is not None and (field_name == "pt" or {"px", "py", "pz"} <= has):
            derived = getattr(cartesian, field_name)
        if field_name in has:
            result[field_name] = values[field_name]
            if derived is not None:
                cross_checks.append(_cross_check(f"{field_name} vs {field_name} from px, py, pz" if field_name != "pt" else "pt vs hypot(px, py)", name, values[field_name], derived, field_name))
        elif derived is not None:
            result[field_name] = derived

    if "mass" in has:
        result["mass"] = values["mass"]
        if cartesian is not None and "energy" in has and {"px", "py", "pz"} <= has:
            cross_checks.append(_cross_check("mass vs mass from E and p", name, values["mass"], cartesian.mass, "mass"))
    elif cartesian is not None and "energy" in has and {"px", "py", "pz"} <= has:
        result["mass"] = cartesian.mass
    elif species in PDG_MASS and "pt" in result:
        result["mass"] = ak.zeros_like(result["pt"]) + PDG_MASS[species]

    if "charge" in has:
        result["charge"] = ak.values_astype(np.rint(values["charge"]), np.int32) if _finite_all(values["charge"]) else values["charge"]
    elif "pdg_id" in has:
        result["charge"] = ak.values_astype(-np.sign(values["pdg_id"]), np.int32)
    elif species == "photon" and "pt" in result:
        result["charge"] = ak.values_astype(ak.zeros_like(result["pt"]), np.int32)

    for extra in ("energy", "px", "py", "pz"):
        if extra in has:
            result[extra] = values[extra]
    if not result:
        return ak.Array([])
    return ak.zip(result)


def _finite_all(values: ak.Array) -> bool:
    flat = ak.to_numpy(ak.flatten(values, axis=None))
    return bool(np.all(np.isfinite(flat)))


def _cross_check(label: str, collection: str, stored: ak.Array, derived: ak.Array, field_name: str) -> CrossCheck:
    stored_flat = np.asarray(ak.to_numpy(ak.flatten(stored, axis=None)), dtype=np.float64)
    derived_flat = np.asarray(ak.to_numpy(ak.flatten(derived, axis=None)), dtype=np.float64)
    tolerance = {"pt": 1e-3, "eta": 1e-3, "phi": 1e-3, "mass": 1e-2}.get(field_name, 1e-3)
    return CrossCheck(label, collection, stored_flat, derived_flat, tolerance)


def build_events(layout: Layout, plans: dict[str, dict[str, FieldSpec]], raw: Mapping[RawKey, ak.Array], n_events: int) -> CanonicalChunk:
    """Assemble one chunk of canonical events from raw branch arrays read for ``layout``."""
    cross_checks: list[CrossCheck] = []
    fields: dict[str, ak.Array] = {}

    for name, spec in layout.event.items():
        key = (layout.event_tree, spec.branch)
        if key in raw:
            fields[name] = ak.values_astype(raw[key], np.int64)

    for collection in layout.collections.values():
        stored = plans.get(collection.name, {})
        if not stored:
            continue
        counter_key = (collection.tree, collection.counter or "")
        first_field = next(iter(stored.values()))
        if collection.kind == "jagged" and counter_key in raw and not first_field.first:
            lengths = ak.num(raw[(collection.tree, first_field.branch)], axis=1)
            cross_checks.append(
                CrossCheck(
                    f"{collection.counter} vs number of stored {collection.name}",
                    collection.name,
                    np.asarray(ak.to_numpy(raw[counter_key]), dtype=np.float64),
                    np.asarray(ak.to_numpy(lengths), dtype=np.float64),
                    0.0,
                )
            )
        for target, array in build_collection(collection, stored, raw, n_events, cross_checks).items():
            if len(array.fields):
                fields[target] = array

    met = {}
    for name, spec in layout.met.items():
        key = (layout.met_tree, spec.branch)
        if key in raw:
            values = ak.values_astype(raw[key], np.float64)
            values = ak.firsts(values) if spec.first else values
            met[name] = ak.fill_none(values * spec.scale, np.nan)
    if met:
        if "pt" not in met and {"px", "py"} <= set(met):
            two = vector.zip({"px": met["px"], "py": met["py"]})
            met = {"pt": two.pt, "phi": two.phi, **met}
        fields["met"] = ak.zip(met)

    if not fields:
        return CanonicalChunk(ak.Array([{}] * n_events), cross_checks)
    events = ak.zip(fields, depth_limit=1)

    # A stored pair mass (the education files' M) is compared with the mass of the two muons.
    for observable, branch in layout.event_observables.items():
        key = (None, branch)
        if observable == "pair_mass" and key in raw and "muons" in fields:
            muons = fields["muons"]
            if "energy" in muons.fields and {"px", "py", "pz"} <= set(muons.fields):
                four = vector.zip({"px": muons.px, "py": muons.py, "pz": muons.pz, "E": muons.energy})
                source = "four-vectors (E, px, py, pz)"
            else:
                four = vector.zip({"pt": muons.pt, "eta": muons.eta, "phi": muons.phi, "mass": muons.mass})
                source = "pt, eta, phi and the muon mass"
            pair = four[:, 0] + four[:, 1]
            cross_checks.append(
                CrossCheck(f"stored {branch} vs pair mass from {source}", "event", np.asarray(ak.to_numpy(raw[key]), dtype=np.float64), np.asarray(ak.to_numpy(pair.mass), dtype=np.float64), 1e-3)
            )
    return CanonicalChunk(events, cross_checks)
