"""Writing generated events as ROOT, Parquet or CSV files, chosen by the file extension.

A feature matrix names its objects by column: ``mu1_pt, mu1_eta, mu1_phi, mu2_pt, ...``,
``jet1_pt, ...``. The writers turn those into

- ROOT (``.root``): a TTree ``Events`` with NanoAOD names, ``nMuon``, ``Muon_pt``,
  ``Muon_eta``, ``Muon_phi``, ``Muon_mass``, ``Muon_charge`` (float32 kinematics in GeV and
  radians, int32 charge, as NanoAOD stores them), written by uproot from jagged awkward arrays;
- Parquet (``.parquet``, ``.pq``): the same names and types, with uint32 counters as in NanoAOD,
  written by awkward;
- CSV (``.csv``), one row per event, in the format of the CMS education file that the product's
  layouts read back:

  - two muons: the dimuon names ``E1 px1 py1 pz1 pt1 eta1 phi1 Q1 E2 ... M`` (layout csv-pairs);
  - four charged muons or electrons: the four-lepton names ``PID1 E1 px1 ... Q1 ... Q4 M``, with
    the PDG id from the charge (layout four-lepton);
  - anything else: flat NanoAOD-style names ``Jet1_pt Jet1_eta Jet1_phi Jet1_mass Jet2_pt ... M``.
    No built-in layout reads these back.

  ``M`` is the invariant mass (GeV) of all objects of the event.

Every writer goes through a temporary file in the target folder and renames it at the end,
so a failed write never leaves a partial file at the target path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import vector

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.features.sets import group_object_columns

log = logging.getLogger(__name__)

FORMATS = {".root": "root", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

# Column prefix of a feature matrix -> NanoAOD collection name.
COLLECTION_NAMES = {
    "mu": "Muon",
    "muon": "Muon",
    "e": "Electron",
    "el": "Electron",
    "ele": "Electron",
    "electron": "Electron",
    "jet": "Jet",
    "ph": "Photon",
    "pho": "Photon",
    "photon": "Photon",
    "gamma": "Photon",
    "tau": "Tau",
}

# Rest masses (GeV, PDG 2024) used when the feature set does not generate a mass.
# Jets have none: their mass is a measured quantity, so a jet without one is treated as massless.
DEFAULT_MASSES = {"Muon": 0.1056583755, "Electron": 0.51099895e-3, "Photon": 0.0, "Tau": 1.77693}
CHARGED = ("Muon", "Electron", "Tau")

# PDG ids of the negative leptons. The education four-lepton files store PID = -PDG * charge,
# so a mu- has 13 and a mu+ has -13.
LEPTON_PDG_IDS = {"Muon": 13, "Electron": 11}


@dataclass
class ObjectColumns:
    """Column indices of one reconstructed object, for example the second muon (``mu2_*``)."""

    collection: str
    number: int
    indices: dict[str, int] = field(default_factory=dict)


OUTPUT_FIELDS = ("pt", "eta", "phi", "mass", "charge")


def parse_objects(columns: Sequence[str]) -> list[ObjectColumns]:
    """Group ``<prefix><n>_<field>`` columns into objects, ordered by collection and number.

    Only objects with ``pt``, ``eta`` and ``phi`` columns are returned.
    """
    objects = []
    for item in group_object_columns(columns):
        collection = COLLECTION_NAMES.get(item.prefix.lower(), item.prefix.capitalize())
        indices = {name: index for name, index in item.indices.items() if name in OUTPUT_FIELDS}
        if {"pt", "eta", "phi"} <= set(indices):
            objects.append(ObjectColumns(collection, item.number, indices))
    return sorted(objects, key=lambda o: (o.collection, o.number))


def _masses(x: np.ndarray, obj: ObjectColumns) -> np.ndarray:
    if "mass" in obj.indices:
        return x[:, obj.indices["mass"]]
    return np.full(len(x), DEFAULT_MASSES.get(obj.collection, 0.0))


def _charges(x: np.ndarray, columns: Sequence[str], objects: list[ObjectColumns], seed: int) -> dict[int, np.ndarray]:
    """Return the charge of each charged object (by position in ``objects``).

    A ``<prefix><n>_charge`` column is used as is. Without one, a ``charge_product`` column
    and exactly two charged objects give the first object a random sign (seeded) and the
    second the sign that matches the product.
    """
    charges = {i: x[:, o.indices["charge"]] for i, o in enumerate(objects) if "charge" in o.indices}
    charged = [i for i, o in enumerate(objects) if o.collection in CHARGED and i not in charges]
    if charged and "charge_product" in columns and len(charged) == 2 and not charges:
        product = np.sign(x[:, list(columns).index("charge_product")])
        first = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=len(x))
        charges[charged[0]] = first
        charges[charged[1]] = first * product
    return charges


def four_vectors(x: np.ndarray, columns: Sequence[str]) -> list[vector.MomentumNumpy4D]:
    """Return one ``vector`` four-momentum array [n] per object of the feature matrix ``x`` [n, d]."""
    return [
        vector.array(
            {
                "pt": x[:, obj.indices["pt"]],
                "eta": x[:, obj.indices["eta"]],
                "phi": x[:, obj.indices["phi"]],
                "mass": _masses(x, obj),
            }
        )
        for obj in parse_objects(columns)
    ]


def invariant_mass(x: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    """Return the invariant mass (GeV) of the sum of every object in each event of ``x`` [n, d].

    Raises:
        ConfigError: The columns describe fewer than two objects.
    """
    vectors = four_vectors(x, columns)
    if len(vectors) < 2:
        raise ConfigError(
            f"columns {list(columns)} describe {len(vectors)} object(s), but an invariant mass needs at least two"
        )
    total = vectors[0]
    for other in vectors[1:]:
        total = total + other
    return np.asarray(total.mass, dtype=np.float64)


def output_format(path: Path) -> str:
    """Return "root", "parquet" or "csv" for the extension of ``path``.

    Raises:
        ConfigError: The extension is not .root, .parquet, .pq or .csv.
    """
    suffix = path.suffix.lower()
    if not suffix:
        raise ConfigError(f"output file {path} has no extension: expected .root, .parquet or .csv")
    if suffix not in FORMATS:
        raise ConfigError(f"output file {path} has the extension {suffix!r}: expected .root, .parquet or .csv")
    return FORMATS[suffix]


def write_events(
    path: str | Path,
    x: np.ndarray,
    columns: Sequence[str],
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the events of ``x`` [n, d] (physical units) to ``path`` in the format of its extension.

    ``seed`` fixes the charges drawn for features that store only a charge product. Parent
    folders are created. Returns the path written.

    Raises:
        ConfigError: Unknown extension, no objects in ``columns``, an existing file without
            ``overwrite``, or a path that cannot be written.
    """
    target = Path(path).expanduser()
    kind = output_format(target)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(columns):
        raise ValueError(f"expected events of shape [n, {len(columns)}], got {list(x.shape)}")
    if target.exists() and not overwrite:
        raise ConfigError(f"output file {target} already exists. Choose another path or allow overwriting.")
    if not parse_objects(columns):
        raise ConfigError(f"columns {list(columns)} name no objects (expected names like mu1_pt, jet1_eta)")

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"output folder {target.parent} cannot be created: {error.strerror or error}") from None
    temporary = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
    try:
        if kind == "csv":
            _write_csv(temporary, x, columns, seed)
        else:
            arrays = nanoaod_arrays(x, columns, seed=seed)
            if kind == "root":
                _write_root(temporary, arrays)
            else:
                ak.to_parquet(ak.zip(arrays, depth_limit=1), temporary)
        os.replace(temporary, target)
    except OSError as error:
        raise ConfigError(f"could not write {target}: {error.strerror or error}. Choose a writable path.") from None
    finally:
        temporary.unlink(missing_ok=True)
    log.info("wrote %d events to %s (%s)", len(x), target, kind)
    return target


def nanoaod_arrays(x: np.ndarray, columns: Sequence[str], *, seed: int = 0) -> dict[str, ak.Array | np.ndarray]:
    """Return NanoAOD-style arrays: ``n<Collection>`` counts and jagged ``<Collection>_<field>``.

    Feature columns that belong to no object (for example ``charge_product``) are left out.
    """
    objects = parse_objects(columns)
    charges = _charges(x, columns, objects, seed)
    n = len(x)
    arrays: dict[str, ak.Array | np.ndarray] = {}
    for collection in dict.fromkeys(o.collection for o in objects):
        members = [(i, o) for i, o in enumerate(objects) if o.collection == collection]
        # NanoAOD counters are UInt_t. NOTE: uproot 5.7 writes the ROOT counters as int32 whatever
        # this type is, so only Parquet output has uint32 counters.
        counts = np.full(n, len(members), dtype=np.uint32)
        fields: dict[str, np.ndarray] = {}
        for name in ("pt", "eta", "phi"):
            fields[name] = np.stack([x[:, o.indices[name]] for _, o in members], axis=1).astype(np.float32)
        if all("mass" in o.indices for _, o in members) or collection in DEFAULT_MASSES:
            fields["mass"] = np.stack([_masses(x, o) for _, o in members], axis=1).astype(np.float32)
        if all(i in charges for i, _ in members):
            fields["charge"] = np.stack([charges[i] for i, _ in members], axis=1).round().astype(np.int32)
        arrays[f"n{collection}"] = counts
        for name, values in fields.items():
            arrays[f"{collection}_{name}"] = ak.unflatten(values.reshape(-1), counts)
    return arrays


def _write_root(path: Path, arrays: dict[str, ak.Array | np.ndarray]) -> None:
    """Write a TTree ``Events``, in which uproot builds each ``n<Collection>`` counter from the jagged records."""
    import uproot

    records: dict[str, ak.Array | np.ndarray] = {}
    collections = [name[1:] for name in arrays if name.startswith("n") and f"{name[1:]}_pt" in arrays]
    for collection in collections:
        prefix = f"{collection}_"
        records[collection] = ak.zip({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
    # mktree makes a TTree, whereas assignment writes an RNTuple in uproot 5.7. The default names
    # of mktree match NanoAOD, with counter "nMuon" and branches such as "Muon_pt".
    with uproot.recreate(path) as file:
        file.mktree("Events", records, title="events generated by cmsgen-tui")


def _write_csv(path: Path, x: np.ndarray, columns: Sequence[str], seed: int) -> None:
    objects = parse_objects(columns)
    charges = _charges(x, columns, objects, seed)
    collections = {o.collection for o in objects}
    charged = all(i in charges for i in range(len(objects)))
    if collections == {"Muon"} and len(objects) == 2:
        table = _education_table(x, columns, objects, charges, pdg_id=None)
    elif len(collections) == 1 and len(objects) == 4 and charged and objects[0].collection in LEPTON_PDG_IDS:
        table = _education_table(x, columns, objects, charges, pdg_id=LEPTON_PDG_IDS[objects[0].collection])
    else:
        table = _flat_nanoaod_table(x, objects, charges)
    if len(objects) >= 2:
        table["M"] = invariant_mass(x, columns)

    import pyarrow as pa
    import pyarrow.csv

    options = pyarrow.csv.WriteOptions(quoting_header="none")
    pyarrow.csv.write_csv(pa.table(table), path, write_options=options)


def _education_table(
    x: np.ndarray,
    columns: Sequence[str],
    objects: list[ObjectColumns],
    charges: dict[int, np.ndarray],
    pdg_id: int | None,
) -> dict[str, np.ndarray]:
    """Return the CSV columns of the CMS education files, numbered by object from 1.

    With ``pdg_id`` (the id of the negative lepton), each object starts with ``PID<i>`` as in
    the four-lepton files.
    """
    table: dict[str, np.ndarray] = {}
    for position, (obj, four) in enumerate(zip(objects, four_vectors(x, columns)), start=1):
        charge = charges.get(position - 1)
        if pdg_id is not None and charge is not None:
            table[f"PID{position}"] = -pdg_id * charge.round().astype(np.int64)
        table.update({f"E{position}": four.E, f"px{position}": four.px, f"py{position}": four.py, f"pz{position}": four.pz})
        for name in ("pt", "eta", "phi"):
            table[f"{name}{position}"] = x[:, obj.indices[name]]
        if charge is not None:
            table[f"Q{position}"] = charge.round().astype(np.int64)
    return table


def _flat_nanoaod_table(x: np.ndarray, objects: list[ObjectColumns], charges: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """Return CSV columns named ``<Collection><i>_<field>``, such as ``Jet2_mass``, numbered per collection from 1."""
    table: dict[str, np.ndarray] = {}
    for i, obj in enumerate(objects):
        stem = f"{obj.collection}{obj.number}_"
        for name in ("pt", "eta", "phi"):
            table[stem + name] = x[:, obj.indices[name]]
        if "mass" in obj.indices or obj.collection in DEFAULT_MASSES:
            table[stem + "mass"] = _masses(x, obj)
        if i in charges:
            table[stem + "charge"] = charges[i].round().astype(np.int64)
    return table
