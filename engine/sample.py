"""Synthetic dimuon sample in three legacy CMS layouts, with planted defects.

The sample replaces older CMS dimuon data when the user has none, and it
is the project's test bed for the missing-field report. It is written in three
layouts that the readers support (CSV pairs, HEP-tutorial ntuple, NanoAOD). Each
layout carries defects that real legacy files have: schema drift, NaNs, -999
sentinels, a zero-entry tree, duplicated events and out-of-range values.
``manifest.json`` lists every planted defect.

Physics model, per event (units GeV and radians):

- dimuon mass: 80 % Z boson, a relativistic Breit-Wigner with constant width
  (m = 91.19, Gamma = 2.50), and 20 % Drell-Yan continuum falling
  exponentially (slope 20 GeV), both truncated to 40-150 GeV;
- pair rapidity from a normal distribution (sigma 1.8), pair pt exponential
  (mean 7 GeV), pair phi uniform;
- decay to two muons, isotropic in the pair rest frame, boosted with ``vector``;
- smearing: relative pt resolution 1 % + 0.01 % per GeV (2 % at 100 GeV),
  eta and phi resolution 1 mrad;
- acceptance as in the 2010/2011 dimuon selections: both muons |eta| < 2.4
  and pt > 15 GeV; charges opposite.

Generation and writing run chunk by chunk (``uproot`` ``WritableTree.extend``
and appended CSV blocks), so memory stays bounded whatever ``n_events`` is.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import uproot
import vector

from cmsgen.engine.errors import ConfigError

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]

LAYOUTS = ("csv_pairs", "tutorial", "nanoaod")
MANIFEST_NAME = "manifest.json"

# Generator parameters (GeV, radians), recorded in the manifest.
Z_MASS = 91.19
Z_WIDTH = 2.50
MUON_MASS = 0.1056583755
MASS_RANGE = (40.0, 150.0)
DRELL_YAN_FRACTION = 0.20
DRELL_YAN_SLOPE = 20.0
RAPIDITY_SIGMA = 1.8
PAIR_PT_MEAN = 7.0
PT_RESOLUTION_CONSTANT = 0.01
PT_RESOLUTION_SLOPE = 1.0e-4  # per GeV
ANGLE_RESOLUTION = 1.0e-3
ETA_MAX = 2.4
PT_MIN = 15.0
SENTINEL = -999.0

DEFAULT_FILES_PER_LAYOUT = 3
DEFAULT_CHUNK_SIZE = 250_000
FIRST_RUN = 160_431  # a run number in the range of the 2011 data taking
EVENTS_PER_RUN = 200_000
EVENTS_PER_LUMI_BLOCK = 400


@dataclass(frozen=True)
class PlantedDefect:
    """One defect planted on purpose in one file of the sample.

    ``count`` is the number of values changed, or the number of repeated rows
    for ``duplicate_events``. For ``missing_branch`` and ``zero_entries`` it is
    the number of entries of the file affected.
    """

    layout: str
    file: str  # relative to the sample directory
    kind: str  # missing_branch | nan | sentinel | zero_entries | duplicate_events | out_of_range
    branch: str | None
    count: int
    note: str


@dataclass(frozen=True)
class SampleFile:
    """One written file: its layout, path relative to the sample directory, tree name and entries."""

    layout: str
    file: str
    tree: str | None
    entries: int


@dataclass
class SampleManifest:
    """Record of a written sample: files, entries per file and every planted defect."""

    directory: Path
    seed: int
    n_events: int
    layouts: tuple[str, ...]
    files: list[SampleFile] = field(default_factory=list)
    defects: list[PlantedDefect] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready manifest, with paths relative to the sample directory."""
        return {
            "format_version": 1,
            "seed": self.seed,
            "n_events": self.n_events,
            "layouts": list(self.layouts),
            "generator": {
                "z_mass_gev": Z_MASS,
                "z_width_gev": Z_WIDTH,
                "mass_range_gev": list(MASS_RANGE),
                "drell_yan_fraction": DRELL_YAN_FRACTION,
                "drell_yan_slope_gev": DRELL_YAN_SLOPE,
                "rapidity_sigma": RAPIDITY_SIGMA,
                "pair_pt_mean_gev": PAIR_PT_MEAN,
                "pt_resolution": f"{PT_RESOLUTION_CONSTANT} + {PT_RESOLUTION_SLOPE} * pt/GeV",
                "angle_resolution_rad": ANGLE_RESOLUTION,
                "acceptance": f"|eta| < {ETA_MAX} and pt > {PT_MIN} GeV for both muons",
            },
            "files": [asdict(item) for item in self.files],
            "defects": [asdict(item) for item in self.defects],
        }

    @property
    def total_entries(self) -> int:
        return sum(item.entries for item in self.files)


@dataclass
class DimuonChunk:
    """Generated events after smearing and acceptance, as arrays of shape [n] or [n, 2] (two muons)."""

    run: np.ndarray
    lumi_block: np.ndarray
    event: np.ndarray
    pt: np.ndarray  # [n, 2] GeV
    eta: np.ndarray  # [n, 2]
    phi: np.ndarray  # [n, 2] radians
    charge: np.ndarray  # [n, 2] int, opposite per event
    px: np.ndarray  # [n, 2] GeV
    py: np.ndarray
    pz: np.ndarray
    energy: np.ndarray  # [n, 2] GeV
    mass: np.ndarray  # [n] GeV, dimuon invariant mass after smearing
    isolation: np.ndarray  # [n, 2] GeV
    global_muon: np.ndarray  # [n, 2] bool ("G" or "T" in the CSV layout)
    jets: ak.Array  # var * {pt, eta, phi, mass}
    electrons: ak.Array  # var * {pt, eta, phi, mass, charge}
    met_pt: np.ndarray  # [n] GeV
    met_phi: np.ndarray  # [n] radians

    def __len__(self) -> int:
        return len(self.run)


# ---------------------------------------------------------------- generation


def _sample_masses(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw dimuon masses [n] in GeV from the Z plus Drell-Yan mixture, by inverse CDF."""
    low, high = MASS_RANGE

    # A relativistic Breit-Wigner with constant width is a Cauchy distribution in s = m^2.
    s_scale = Z_MASS * Z_WIDTH
    u_low = math.atan((low**2 - Z_MASS**2) / s_scale)
    u_high = math.atan((high**2 - Z_MASS**2) / s_scale)
    s = Z_MASS**2 + s_scale * np.tan(rng.uniform(u_low, u_high, n))
    z_mass = np.sqrt(s)

    # Truncated exponential continuum.
    span = 1.0 - math.exp(-(high - low) / DRELL_YAN_SLOPE)
    continuum = low - DRELL_YAN_SLOPE * np.log1p(-rng.uniform(0.0, span, n))

    is_continuum = rng.uniform(size=n) < DRELL_YAN_FRACTION
    return np.where(is_continuum, continuum, z_mass)


def decay_to_muons(
    rng: np.random.Generator,
    mass: np.ndarray,
    pair_pt_mean: float = PAIR_PT_MEAN,
    rapidity_sigma: float = RAPIDITY_SIGMA,
) -> tuple[vector.MomentumNumpy4D, vector.MomentumNumpy4D]:
    """Return the lab four-momenta of both muons for pairs of the given masses [n] GeV.

    The pair pt is exponential with mean ``pair_pt_mean`` (GeV), the pair
    rapidity Gaussian with width ``rapidity_sigma``, and the decay isotropic
    in the pair rest frame.
    """
    n = len(mass)
    pair_pt = rng.exponential(pair_pt_mean, n)
    pair_phi = rng.uniform(-np.pi, np.pi, n)
    rapidity = rng.normal(0.0, rapidity_sigma, n)
    # vector has no rapidity coordinate, so pz and E follow from the transverse mass.
    transverse_mass = np.sqrt(mass**2 + pair_pt**2)
    pair = vector.array(
        {
            "pt": pair_pt,
            "phi": pair_phi,
            "pz": transverse_mass * np.sinh(rapidity),
            "E": transverse_mass * np.cosh(rapidity),
        }
    )

    momentum = np.sqrt(np.maximum(mass**2 / 4.0 - MUON_MASS**2, 0.0))
    cos_theta = rng.uniform(-1.0, 1.0, n)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    azimuth = rng.uniform(-np.pi, np.pi, n)
    px = momentum * sin_theta * np.cos(azimuth)
    py = momentum * sin_theta * np.sin(azimuth)
    pz = momentum * cos_theta
    muon_mass = np.full(n, MUON_MASS)

    first = vector.array({"px": px, "py": py, "pz": pz, "mass": muon_mass}).boost_p4(pair)
    second = vector.array({"px": -px, "py": -py, "pz": -pz, "mass": muon_mass}).boost_p4(pair)
    return first, second


def _smear(rng: np.random.Generator, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the detector resolution to arrays of any shape. Phi is wrapped back into [-pi, pi)."""
    resolution = PT_RESOLUTION_CONSTANT + PT_RESOLUTION_SLOPE * pt
    smeared_pt = pt * (1.0 + resolution * rng.standard_normal(pt.shape))
    smeared_eta = eta + ANGLE_RESOLUTION * rng.standard_normal(eta.shape)
    smeared_phi = phi + ANGLE_RESOLUTION * rng.standard_normal(phi.shape)
    smeared_phi = (smeared_phi + np.pi) % (2.0 * np.pi) - np.pi
    return smeared_pt, smeared_eta, smeared_phi


def _generate_candidates(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Generate n dimuon candidates and return the accepted ones as [m, 2] muon arrays."""
    first, second = decay_to_muons(rng, _sample_masses(rng, n))
    pt = np.stack([first.pt, second.pt], axis=1)
    eta = np.stack([first.eta, second.eta], axis=1)
    phi = np.stack([first.phi, second.phi], axis=1)
    pt, eta, phi = _smear(rng, pt, eta, phi)

    accepted = np.all((np.abs(eta) < ETA_MAX) & (pt > PT_MIN), axis=1)
    pt, eta, phi = pt[accepted], eta[accepted], phi[accepted]

    # Order the muons by pt, as the legacy files do.
    order = np.argsort(-pt, axis=1)
    pt = np.take_along_axis(pt, order, axis=1)
    eta = np.take_along_axis(eta, order, axis=1)
    phi = np.take_along_axis(phi, order, axis=1)
    return {"pt": pt, "eta": eta, "phi": phi}


def _generate_jagged(rng: np.random.Generator, n: int, mean_count: float, pt_min: float, pt_mean: float, eta_max: float, charged: bool) -> ak.Array:
    """Generate a var-length collection of extra objects (jets or electrons) for n events."""
    counts = rng.poisson(mean_count, n)
    total = int(counts.sum())
    pt = np.sort(pt_min + rng.exponential(pt_mean, total))[::-1]
    fields: dict[str, np.ndarray] = {
        "pt": pt,
        "eta": rng.uniform(-eta_max, eta_max, total),
        "phi": rng.uniform(-np.pi, np.pi, total),
        "mass": pt * rng.uniform(0.05, 0.15, total) if not charged else np.full(total, 0.000511),
    }
    if charged:
        fields["charge"] = rng.choice(np.array([-1, 1], dtype=np.int32), total)
    return ak.unflatten(ak.zip(fields), counts)


def generate_chunk(rng: np.random.Generator, n_events: int, first_index: int) -> DimuonChunk:
    """Generate exactly ``n_events`` accepted dimuon events.

    ``first_index`` is the global index of the first event; run, luminosity
    block and event numbers follow from it, so they are unique across chunks.
    """
    parts: list[dict[str, np.ndarray]] = []
    collected = 0
    while collected < n_events:
        # Roughly 60 % of the candidates pass the acceptance, so request 1.8 times the events still needed.
        request = max(1024, int((n_events - collected) * 1.8))
        part = _generate_candidates(rng, request)
        parts.append(part)
        collected += len(part["pt"])
    muons = {key: np.concatenate([part[key] for part in parts])[:n_events] for key in ("pt", "eta", "phi")}

    vectors = vector.array({"pt": muons["pt"], "eta": muons["eta"], "phi": muons["phi"], "mass": np.full(muons["pt"].shape, MUON_MASS)})
    pair = vector.array({"pt": muons["pt"][:, 0], "eta": muons["eta"][:, 0], "phi": muons["phi"][:, 0], "mass": np.full(n_events, MUON_MASS)}) + vector.array(
        {"pt": muons["pt"][:, 1], "eta": muons["eta"][:, 1], "phi": muons["phi"][:, 1], "mass": np.full(n_events, MUON_MASS)}
    )

    first_charge = rng.choice(np.array([-1, 1], dtype=np.int32), n_events)
    charge = np.stack([first_charge, -first_charge], axis=1)

    index = np.arange(first_index, first_index + n_events, dtype=np.int64)
    in_run = index % EVENTS_PER_RUN
    met_px = rng.normal(0.0, 12.0, n_events)
    met_py = rng.normal(0.0, 12.0, n_events)

    return DimuonChunk(
        run=(FIRST_RUN + index // EVENTS_PER_RUN).astype(np.int64),
        lumi_block=(1 + in_run // EVENTS_PER_LUMI_BLOCK).astype(np.int64),
        event=(1_000 + 7 * in_run + rng.integers(0, 7, n_events)).astype(np.int64),
        pt=muons["pt"],
        eta=muons["eta"],
        phi=muons["phi"],
        charge=charge,
        px=np.asarray(vectors.px),
        py=np.asarray(vectors.py),
        pz=np.asarray(vectors.pz),
        energy=np.asarray(vectors.E),
        mass=np.asarray(pair.mass),
        isolation=rng.exponential(1.0, (n_events, 2)),
        global_muon=rng.uniform(size=(n_events, 2)) < 0.9,
        jets=_generate_jagged(rng, n_events, 1.2, 20.0, 25.0, 4.7, charged=False),
        electrons=_generate_jagged(rng, n_events, 0.1, 10.0, 15.0, 2.5, charged=True),
        met_pt=np.hypot(met_px, met_py),
        met_phi=np.arctan2(met_py, met_px),
    )


# ---------------------------------------------------------------- layouts

# Column names of the CSV layout in file order, and the tree name, file stem and suffix of
# each layout. The ROOT layouts take their branch names from the column builders below,
# in which muon quantities are [n, 2] arrays and jets and electrons are var-length awkward arrays.
CSV_COLUMNS = (
    "Run", "Event",
    "type1", "E1", "px1", "py1", "pz1", "pt1", "eta1", "phi1", "Q1",
    "type2", "E2", "px2", "py2", "pz2", "pt2", "eta2", "phi2", "Q2",
    "M",
)  # fmt: skip
TREE_NAMES = {"csv_pairs": None, "tutorial": "events", "nanoaod": "Events"}
FILE_STEMS = {"csv_pairs": "dimuon", "tutorial": "tutorial", "nanoaod": "nanoaod"}
FILE_SUFFIXES = {"csv_pairs": ".csv", "tutorial": ".root", "nanoaod": ".root"}


def _csv_columns(chunk: DimuonChunk) -> dict[str, np.ndarray]:
    """Map a chunk onto the 2010/2011 education CSV pair layout, one array [n] per column."""
    # Copies, because defects are planted in place and the chunk feeds every layout.
    columns: dict[str, np.ndarray] = {"Run": chunk.run.copy(), "Event": chunk.event.copy()}
    for muon in (0, 1):
        suffix = str(muon + 1)
        columns["type" + suffix] = np.where(chunk.global_muon[:, muon], "G", "T")
        columns["E" + suffix] = chunk.energy[:, muon].copy()
        columns["px" + suffix] = chunk.px[:, muon].copy()
        columns["py" + suffix] = chunk.py[:, muon].copy()
        columns["pz" + suffix] = chunk.pz[:, muon].copy()
        columns["pt" + suffix] = chunk.pt[:, muon].copy()
        columns["eta" + suffix] = chunk.eta[:, muon].copy()
        columns["phi" + suffix] = chunk.phi[:, muon].copy()
        columns["Q" + suffix] = chunk.charge[:, muon].copy()
    columns["M"] = chunk.mass.copy()
    return columns


def _collection_from_xyz(objects: ak.Array, prefix: str, charged: bool) -> dict[str, ak.Array]:
    """Return HEP-tutorial branches (Px, Py, Pz, E, optional Charge) of a var-length collection."""
    momenta = vector.zip({"pt": objects.pt, "eta": objects.eta, "phi": objects.phi, "mass": objects.mass})
    branches = {
        f"{prefix}_Px": ak.values_astype(momenta.px, np.float32),
        f"{prefix}_Py": ak.values_astype(momenta.py, np.float32),
        f"{prefix}_Pz": ak.values_astype(momenta.pz, np.float32),
        f"{prefix}_E": ak.values_astype(momenta.E, np.float32),
    }
    if charged:
        branches[f"{prefix}_Charge"] = ak.values_astype(objects.charge, np.int32)
    return branches


def _tutorial_columns(chunk: DimuonChunk) -> dict[str, object]:
    """Map a chunk onto the HEP-tutorial ntuple layout (TTree ``events``)."""
    columns: dict[str, object] = {
        "Muon_Px": chunk.px.astype(np.float32),
        "Muon_Py": chunk.py.astype(np.float32),
        "Muon_Pz": chunk.pz.astype(np.float32),
        "Muon_E": chunk.energy.astype(np.float32),
        "Muon_Charge": chunk.charge.astype(np.int32),
        "Muon_Iso": chunk.isolation.astype(np.float32),
    }
    columns.update(_collection_from_xyz(chunk.electrons, "Electron", charged=True))
    columns.update(_collection_from_xyz(chunk.jets, "Jet", charged=False))
    columns["MET_px"] = (chunk.met_pt * np.cos(chunk.met_phi)).astype(np.float32)
    columns["MET_py"] = (chunk.met_pt * np.sin(chunk.met_phi)).astype(np.float32)
    return columns


def _nanoaod_columns(chunk: DimuonChunk) -> dict[str, object]:
    """Map a chunk onto the NanoAOD layout (TTree ``Events``)."""
    return {
        "run": chunk.run.astype(np.uint32),
        "luminosityBlock": chunk.lumi_block.astype(np.uint32),
        "event": chunk.event.astype(np.uint64),
        "Muon_pt": chunk.pt.astype(np.float32),
        "Muon_eta": chunk.eta.astype(np.float32),
        "Muon_phi": chunk.phi.astype(np.float32),
        "Muon_mass": np.full(chunk.pt.shape, MUON_MASS, dtype=np.float32),
        "Muon_charge": chunk.charge.astype(np.int32),
        "Jet_pt": ak.values_astype(chunk.jets.pt, np.float32),
        "Jet_eta": ak.values_astype(chunk.jets.eta, np.float32),
        "Jet_phi": ak.values_astype(chunk.jets.phi, np.float32),
        "Jet_mass": ak.values_astype(chunk.jets.mass, np.float32),
        "MET_pt": chunk.met_pt.astype(np.float32),
        "MET_phi": chunk.met_phi.astype(np.float32),
    }


COLUMN_BUILDERS: dict[str, Callable[[DimuonChunk], dict[str, object]]] = {
    "csv_pairs": _csv_columns,  # type: ignore[dict-item]
    "tutorial": _tutorial_columns,
    "nanoaod": _nanoaod_columns,
}


# ---------------------------------------------------------------- planted defects


@dataclass(frozen=True)
class DefectPlan:
    """Plan of one defect to plant in the first chunk of data file ``file_index`` of a layout."""

    file_index: int
    kind: str
    branch: str | None
    count: int
    note: str


DEFECT_PLANS: dict[str, tuple[DefectPlan, ...]] = {
    "csv_pairs": (
        DefectPlan(0, "nan", "eta1", 5, "eta1 is NaN"),
        DefectPlan(0, "sentinel", "pt2", 4, "pt2 is the -999 sentinel"),
        DefectPlan(0, "duplicate_events", "Run,Event", 3, "rows repeat an earlier row, so (Run, Event) repeats"),
        DefectPlan(1, "missing_branch", "M", 0, "column M is absent from this file (schema drift)"),
        DefectPlan(2, "out_of_range", "phi1", 3, "phi1 is above pi"),
        DefectPlan(2, "out_of_range", "pt1", 2, "pt1 is negative"),
    ),
    "tutorial": (
        DefectPlan(0, "nan", "Muon_E", 5, "the first muon's energy is NaN"),
        DefectPlan(0, "sentinel", "MET_px", 4, "MET_px is the -999 sentinel"),
        DefectPlan(1, "missing_branch", "Muon_Iso", 0, "branch Muon_Iso is absent from this file (schema drift)"),
        DefectPlan(2, "out_of_range", "Muon_E", 3, "the first muon's energy is negative"),
    ),
    "nanoaod": (
        DefectPlan(0, "nan", "Muon_eta", 5, "the first muon's eta is NaN"),
        DefectPlan(0, "sentinel", "MET_pt", 4, "MET_pt is the -999 sentinel"),
        DefectPlan(0, "duplicate_events", "run,event", 3, "events repeat an earlier event, so (run, event) repeats"),
        DefectPlan(1, "missing_branch", "Muon_mass", 0, "branch Muon_mass is absent from this file (schema drift)"),
        DefectPlan(2, "out_of_range", "Muon_pt", 3, "the first muon's pt is negative"),
        DefectPlan(2, "out_of_range", "Muon_phi", 2, "the first muon's phi is above pi"),
    ),
}


def _plant_defects(columns: dict[str, object], plans: Sequence[DefectPlan], rng: np.random.Generator) -> list[tuple[DefectPlan, int]]:
    """Plant the value defects of ``plans`` in place in the first chunk of a file.

    Return each plan with the count actually planted. ``missing_branch`` plans are
    skipped, because the writer leaves those branches out.

    Every defect uses its own rows, so the counts in the manifest are exact. A
    duplicated row copies another untouched row, including its jets and electrons.
    """
    n_rows = len(next(iter(columns.values())))  # type: ignore[arg-type]
    value_plans = [plan for plan in plans if plan.kind != "missing_branch"]
    needed = sum(2 * plan.count if plan.kind == "duplicate_events" else plan.count for plan in value_plans)
    rows = rng.permutation(n_rows)[: min(needed, n_rows)]
    planted: list[tuple[DefectPlan, int]] = []
    position = 0

    for plan in value_plans:
        width = 2 * plan.count if plan.kind == "duplicate_events" else plan.count
        selected = np.sort(rows[position : position + width])
        position += width

        if plan.kind == "duplicate_events":
            pairs = len(selected) // 2
            sources, targets = selected[:pairs], selected[pairs : 2 * pairs]
            index = np.arange(n_rows)
            index[targets] = sources
            for name, values in columns.items():
                columns[name] = values[index]  # type: ignore[index]
            planted.append((plan, pairs))
            continue

        assert plan.branch is not None
        values = columns[plan.branch]
        assert isinstance(values, np.ndarray)
        target = (selected, 0) if values.ndim == 2 else selected
        if plan.kind == "nan":
            values[target] = np.nan
        elif plan.kind == "sentinel":
            values[target] = SENTINEL
        elif plan.kind == "out_of_range" and "phi" in plan.branch:
            values[target] = np.pi + 0.5
        elif plan.kind == "out_of_range":
            values[target] = -np.abs(values[target]) - 1.0
        planted.append((plan, len(selected)))
    return planted


# ---------------------------------------------------------------- writers


class _CsvFileWriter:
    """Writer that appends CSV blocks to one file, with floats rounded to 4 decimals as in the education files."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.entries = 0
        self._handle = path.open("wb")
        self._handle.write((",".join(self.columns) + "\n").encode())

    def extend(self, data: dict[str, object]) -> None:
        arrays = {}
        for name in self.columns:
            values = np.asarray(data[name])
            arrays[name] = np.round(values, 4) if values.dtype.kind == "f" else values
        buffer = io.BytesIO()
        pa_csv.write_csv(pa.table(arrays), buffer, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
        self._handle.write(buffer.getvalue())
        self.entries += len(arrays[self.columns[0]])

    def close(self) -> None:
        self._handle.close()


def _group_collections(data: dict[str, object], branch_names: Sequence[str]) -> dict[str, object]:
    """Group ``Prefix_field`` columns of var-length collections into awkward records for uproot.

    Flat per-event branches (``run``, ``MET_pt``) stay as NumPy arrays. A [n, 2]
    array becomes a var-length list of two values per event.
    """
    grouped: dict[str, object] = {}
    records: dict[str, dict[str, ak.Array]] = {}
    for name in branch_names:
        values = data[name]
        is_collection = isinstance(values, ak.Array) or (isinstance(values, np.ndarray) and values.ndim == 2)
        if not is_collection:
            grouped[name] = values
            continue
        prefix, _, field_name = name.partition("_")
        array = ak.from_regular(ak.Array(values), axis=1) if isinstance(values, np.ndarray) else values
        records.setdefault(prefix, {})[field_name] = array
    for prefix, fields in records.items():
        grouped[prefix] = ak.zip(fields)
    return grouped


class _RootFileWriter:
    """Writer of one TTree, filled chunk by chunk with ``WritableTree.extend``."""

    def __init__(self, path: Path, tree_name: str, branch_names: Sequence[str], counter_prefix: str) -> None:
        self.path = path
        self.tree_name = tree_name
        self.branch_names = tuple(branch_names)
        self.counter_prefix = counter_prefix
        self.entries = 0
        self._file = uproot.recreate(path)
        self._tree: uproot.WritableTree | None = None

    def _make_tree(self, grouped: dict[str, object]) -> uproot.WritableTree:
        types = {name: (values.type.content if isinstance(values, ak.Array) else values.dtype) for name, values in grouped.items()}  # type: ignore[attr-defined]
        prefix = self.counter_prefix
        return self._file.mktree(
            self.tree_name,
            types,
            counter_name=lambda counted: prefix + counted,
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )

    def extend(self, data: dict[str, object]) -> None:
        grouped = _group_collections(data, self.branch_names)
        if self._tree is None:
            self._tree = self._make_tree(grouped)
        self._tree.extend(grouped)
        self.entries += len(next(iter(grouped.values())))  # type: ignore[arg-type]

    def create_empty(self, template: dict[str, object]) -> None:
        """Create the tree with the branches of ``template`` and write no entries."""
        self._tree = self._make_tree(_group_collections(template, self.branch_names))

    def close(self) -> None:
        self._file.close()


def _open_writer(layout: str, path: Path, names: Sequence[str]) -> _CsvFileWriter | _RootFileWriter:
    """Create the file at ``path`` and return the writer of ``layout`` for the columns or branches ``names``."""
    if layout == "csv_pairs":
        return _CsvFileWriter(path, names)
    tree_name = TREE_NAMES[layout]
    assert tree_name is not None
    return _RootFileWriter(path, tree_name, names, counter_prefix="N" if layout == "tutorial" else "n")


# ---------------------------------------------------------------- the sample


def _split_events(n_events: int, n_files: int) -> list[int]:
    """Split ``n_events`` over ``n_files`` as evenly as possible, the first files getting one more."""
    base, remainder = divmod(n_events, n_files)
    return [base + (1 if index < remainder else 0) for index in range(n_files)]


def _check_arguments(n_events: int, layouts: Sequence[str], n_files: int, chunk_size: int) -> None:
    """Raise ``ConfigError`` for an invalid argument of ``write_sample``."""
    if n_events < 1:
        raise ConfigError(f"The number of events {n_events} is invalid; give a positive number, such as 100000.")
    unknown = [layout for layout in layouts if layout not in LAYOUTS]
    if unknown or not layouts:
        raise ConfigError(f"The sample layouts {list(layouts)} are invalid; choose from {', '.join(LAYOUTS)}.")
    if n_files < 1 or n_files > n_events:
        raise ConfigError(f"The number of files per layout {n_files} is invalid; give 1 to {n_events} files.")
    if chunk_size < 1:
        raise ConfigError(f"The chunk size {chunk_size} is invalid; give a positive number of events.")


def write_sample(
    directory: str | Path,
    n_events: int = 100_000,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    *,
    layouts: Sequence[str] = LAYOUTS,
    n_files: int = DEFAULT_FILES_PER_LAYOUT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SampleManifest:
    """Write a synthetic dimuon dataset in each requested layout, with planted defects.

    Each layout gets ``n_files`` data files that contain ``n_events`` events in
    total (the same events in every layout), plus one file whose table or tree
    has zero entries. ``manifest.json`` in ``directory`` lists files and
    defects. The output depends only on ``seed``, ``n_events``, ``n_files`` and
    ``chunk_size``. Memory grows with ``chunk_size`` (events generated at
    once), not with ``n_events``. ``progress`` is called with the fraction
    done (0..1) and a message after every chunk.
    """
    layouts = tuple(layouts)
    _check_arguments(n_events, layouts, n_files, chunk_size)
    root = Path(directory)
    try:
        for layout in layouts:
            (root / layout).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"The sample folder {root} cannot be created ({error.strerror}); choose a writable folder.") from error

    log.info("writing a %d-event sample with seed %d in %s to %s", n_events, seed, ", ".join(layouts), root)
    manifest = SampleManifest(directory=root, seed=seed, n_events=n_events, layouts=layouts)
    rng = np.random.default_rng(seed)
    written = 0

    for file_index, file_events in enumerate(_split_events(n_events, n_files)):
        writers: dict[str, _CsvFileWriter | _RootFileWriter] = {}
        for layout in layouts:
            missing = {plan.branch for plan in DEFECT_PLANS[layout] if plan.kind == "missing_branch" and plan.file_index == file_index}
            names = [name for name in _layout_names(layout) if name not in missing]
            path = root / layout / f"{FILE_STEMS[layout]}_{file_index}{FILE_SUFFIXES[layout]}"
            writers[layout] = _open_writer(layout, path, names)

        done_in_file = 0
        while done_in_file < file_events:
            size = min(chunk_size, file_events - done_in_file)
            chunk = generate_chunk(rng, size, first_index=written)
            for layout_index, layout in enumerate(layouts):
                columns = COLUMN_BUILDERS[layout](chunk)
                if done_in_file == 0:
                    plans = [plan for plan in DEFECT_PLANS[layout] if plan.file_index == file_index]
                    defect_rng = np.random.default_rng([seed, LAYOUTS.index(layout), file_index])
                    for plan, count in _plant_defects(columns, plans, defect_rng):
                        relative = writers[layout].path.relative_to(root).as_posix()
                        manifest.defects.append(PlantedDefect(layout, relative, plan.kind, plan.branch, count, plan.note))
                writers[layout].extend(columns)
            done_in_file += size
            written += size
            if progress is not None:
                progress(written / n_events, f"file {file_index + 1} of {n_files}: {written:,} of {n_events:,} events written")

        for layout, writer in writers.items():
            writer.close()
            relative = writer.path.relative_to(root).as_posix()
            manifest.files.append(SampleFile(layout, relative, TREE_NAMES[layout], writer.entries))
            for plan in DEFECT_PLANS[layout]:
                if plan.kind == "missing_branch" and plan.file_index == file_index:
                    manifest.defects.append(PlantedDefect(layout, relative, plan.kind, plan.branch, writer.entries, plan.note))

    for layout in layouts:
        _write_empty_file(root, layout, manifest)

    manifest_path = root / MANIFEST_NAME
    manifest_path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    log.info("sample written: %d files, %d defects, manifest %s", len(manifest.files), len(manifest.defects), manifest_path)
    return manifest


def _layout_names(layout: str) -> list[str]:
    """Return the column or branch names of a layout, in file order."""
    if layout == "csv_pairs":
        return list(CSV_COLUMNS)
    template = generate_chunk(np.random.default_rng(0), 1, first_index=0)
    return list(COLUMN_BUILDERS[layout](template))


def _write_empty_file(root: Path, layout: str, manifest: SampleManifest) -> None:
    """Write the layout's zero-entry file: a CSV header without rows, or a TTree with 0 entries."""
    path = root / layout / f"{FILE_STEMS[layout]}_empty{FILE_SUFFIXES[layout]}"
    names = _layout_names(layout)
    writer = _open_writer(layout, path, names)
    if isinstance(writer, _RootFileWriter):
        template = COLUMN_BUILDERS[layout](generate_chunk(np.random.default_rng(0), 1, first_index=0))
        writer.create_empty(template)
    writer.close()

    relative = path.relative_to(root).as_posix()
    manifest.files.append(SampleFile(layout, relative, TREE_NAMES[layout], 0))
    contents = "a header without rows" if layout == "csv_pairs" else f"TTree {TREE_NAMES[layout]} with 0 entries"
    manifest.defects.append(PlantedDefect(layout, relative, "zero_entries", None, 0, f"the file holds {contents}"))
