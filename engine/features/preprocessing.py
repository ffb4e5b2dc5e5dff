"""Invertible preprocessing of feature matrices, fitted on the training split and saved as JSON.

The pipeline maps physical features (GeV, radians, discrete charges) to a float32 matrix that
generative models train on, and back:

1. Constant columns: a non-phi column with one value on the whole training split (a charge
   product under an opposite-charge selection, the muon mass) is left out of the model input,
   and the inverse writes that value back.
2. ``pt`` columns: natural logarithm (so pt stays positive after inversion).
3. ``mass`` columns: ``log(m + offset)``. The offset is 0 when every training mass is positive.
   Otherwise it lifts the smallest training mass to the median distance above it (at least
   1 MeV), and the inverse clips results below 0 to 0, so generated masses are never negative.
4. ``phi`` columns: the first ``phi`` column (the leading object's) is dropped. Every other
   ``phi`` becomes its difference to it, wrapped to [-pi, pi) and centred on its circular mean on
   the training split, so that back-to-back pairs do not sit on the wrap boundary. The inverse
   draws a uniform global rotation for the leading phi and wraps every phi to [-pi, pi).
5. ``discrete`` columns: the allowed values are those seen on the training split. They are
   dequantised with uniform noise narrower than half the gap between them, and the inverse
   rounds to the nearest one.
6. Standardisation with the mean and standard deviation of the training split.

When the objects of a collection (``mu1_*``, ``mu2_*``...) are ordered by decreasing pt in
every training event, as the feature sets select them, the inverse orders each generated event
the same way and moves every field of an object together.

Example:
    >>> pipe = Preprocessing.fit(x, columns, kinds, {"charge_product": (-1, 1)})
    >>> z = pipe.transform(x, np.random.default_rng(1))   # float32 [n, pipe.output_dim]
    >>> x_back = pipe.inverse(z, np.random.default_rng(2))  # float64 [n, len(columns)]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats
import torch

from cmsgen.engine.errors import ConfigError, NoEventsError
from cmsgen.engine.features.sets import group_object_columns

logger = logging.getLogger(__name__)

PREPROCESSING_FORMAT = "cmsgen-preprocessing/2"
# Format 1 had no constant columns, no mass transform and no pt ordering. Runs saved with it
# still load: their models were built for its output columns.
OLD_PREPROCESSING_FORMATS = ("cmsgen-preprocessing/1",)
KNOWN_KINDS = ("pt", "eta", "phi", "mass", "discrete", "real")
MUON_MASS_GEV = 0.1056583755

# Dequantisation noise spans this fraction of the half gap between neighbouring allowed
# values. The 10% margin keeps float32 rounding from moving a value onto the midpoint between two.
DEQUANTISATION_FRACTION = 0.9

# Smallest shift (GeV) that the mass transform adds above the smallest training mass, so that
# log() stays finite when most training masses are equal (photons at 0 GeV, for example).
MIN_MASS_SHIFT_GEV = 1e-3


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Wrap angles in radians to [-pi, pi)."""
    return np.mod(phi + np.pi, 2.0 * np.pi) - np.pi


@dataclass
class Preprocessing:
    """Fitted, invertible preprocessing of a feature matrix.

    Use :meth:`fit` to build one. Every field is plain data, so :meth:`to_dict` and
    :meth:`from_dict` round-trip it through JSON exactly.

    Arguments:
        columns: Input column names, length ``d``.
        kinds: Kind of each column: "pt" (GeV), "eta", "phi" (radians), "mass" (GeV),
            "discrete" or "real".
        discrete_values: Sorted values of each discrete column seen on the training split.
        leading_phi: Name of the dropped leading ``phi`` column, or None without phi columns.
        phi_offsets: Circular mean (radians) of each relative phi column on the training split.
        dequantisation_widths: Half width of the uniform noise added to each discrete column.
        mean: Mean of each output column before standardisation, length ``output_dim``.
        std: Standard deviation of each output column before standardisation.
        seed: Seed of the random generator used when a call passes ``rng=None``.
        constants: Value of each column that is constant on the training split. These columns
            are not model inputs.
        mass_offsets: Offset (GeV) added to each mass column before the logarithm.
        pt_ordered: Column prefixes (such as "mu") whose objects the inverse orders by
            decreasing pt.
    """

    columns: tuple[str, ...]
    kinds: tuple[str, ...]
    discrete_values: dict[str, tuple[float, ...]]
    leading_phi: str | None
    phi_offsets: dict[str, float]
    dequantisation_widths: dict[str, float]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    seed: int = 0
    constants: dict[str, float] = field(default_factory=dict)
    mass_offsets: dict[str, float] = field(default_factory=dict)
    pt_ordered: tuple[str, ...] = ()
    _output_columns: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._output_columns = tuple(c for c in self.columns if c != self.leading_phi and c not in self.constants)

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        columns: Sequence[str],
        kinds: Sequence[str],
        discrete_values: Mapping[str, Sequence[float]] | None = None,
        seed: int = 0,
    ) -> Preprocessing:
        """Fit the pipeline on the training split.

        Arguments:
            x: Training features in physical units, float [n, d].
            columns: Column names, length d.
            kinds: Kind of each column (see :data:`KNOWN_KINDS`).
            discrete_values: Allowed values of each "discrete" column. The pipeline keeps the
                allowed values that the training split contains.
            seed: Seed of the dequantisation noise drawn while fitting, and the default seed
                of later calls with ``rng=None``.

        Raises:
            ConfigError: Columns, kinds and allowed values do not match.
            NoEventsError: ``x`` is empty, contains values the pipeline cannot transform, or
                has the same value in every column.
        """
        columns = tuple(str(c) for c in columns)
        kinds = tuple(str(k) for k in kinds)
        allowed = {str(k): tuple(sorted({float(v) for v in vals})) for k, vals in (discrete_values or {}).items()}
        _check_layout(columns, kinds, allowed)
        x = _as_matrix(x, columns)
        if x.shape[0] < 2:
            raise NoEventsError(
                f"cannot fit the preprocessing on {x.shape[0]} events: the training split needs at least 2"
            )
        discrete_columns = [c for c, k in zip(columns, kinds) if k == "discrete"]
        # A pipeline with the allowed values and no fitted parameters checks the input values.
        unfitted = cls(
            columns=columns,
            kinds=kinds,
            discrete_values={c: allowed[c] for c in discrete_columns},
            leading_phi=None,
            phi_offsets={},
            dequantisation_widths={},
            mean=(),
            std=(),
        )
        unfitted._check_values(x)

        constants = {
            name: float(x[0, j]) for j, (name, kind) in enumerate(zip(columns, kinds)) if kind != "phi" and (x[:, j] == x[0, j]).all()
        }
        seen = {c: tuple(float(v) for v in np.unique(x[:, columns.index(c)])) for c in discrete_columns}
        phi_columns = [c for c, k in zip(columns, kinds) if k == "phi"]
        leading_phi = phi_columns[0] if phi_columns else None
        fitted = cls(
            columns=columns,
            kinds=kinds,
            discrete_values=seen,
            leading_phi=leading_phi,
            phi_offsets={c: 0.0 for c in phi_columns[1:]},
            dequantisation_widths={c: DEQUANTISATION_FRACTION * _half_gap(seen[c]) for c in discrete_columns if c not in constants},
            mean=(),
            std=(),
            seed=int(seed),
            constants=constants,
            mass_offsets={
                c: _mass_offset(x[:, columns.index(c)]) for c, k in zip(columns, kinds) if k == "mass" and c not in constants
            },
            pt_ordered=_pt_ordered_prefixes(x, columns),
        )
        if fitted.output_dim == 0:
            raise NoEventsError(
                f"every column of the {x.shape[0]} training events is constant, so there is nothing to learn. "
                "Select more varied events or other features."
            )

        # The circular mean of each relative phi centres its distribution in the wrapped range.
        if leading_phi is not None:
            lead = x[:, columns.index(leading_phi)]
            for name in phi_columns[1:]:
                relative = wrap_phi(x[:, columns.index(name)] - lead)
                fitted.phi_offsets[name] = float(scipy.stats.circmean(relative, high=np.pi, low=-np.pi))

        unstandardised = fitted._forward(x, np.random.default_rng(seed))
        mean = unstandardised.mean(axis=0)
        std = unstandardised.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        fitted.mean = tuple(float(v) for v in mean)
        fitted.std = tuple(float(v) for v in std)
        logger.info(
            "fitted preprocessing on %d events: %d columns in, %d out, constant columns %s, pt-ordered objects %s",
            x.shape[0],
            len(columns),
            fitted.output_dim,
            sorted(constants) or "none",
            list(fitted.pt_ordered) or "none",
        )
        return fitted

    # ------------------------------------------------------------------ properties

    @property
    def output_dim(self) -> int:
        """Number of columns after :meth:`transform`."""
        return len(self._output_columns)

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Names of the columns after :meth:`transform`: the input names minus the leading phi and the constants."""
        return self._output_columns

    # ------------------------------------------------------------------ transforms

    def transform(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Map physical features float [n, d] to standardised model inputs float32 [n, output_dim].

        ``rng`` draws the dequantisation noise. If it is None, a generator seeded with ``self.seed`` is used.
        """
        x = _as_matrix(x, self.columns)
        self._check_values(x)
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        z = (self._forward(x, rng) - np.asarray(self.mean)) / np.asarray(self.std)
        return z.astype(np.float32)

    def inverse(self, z: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Map model outputs float [n, output_dim] back to physical features float64 [n, d].

        ``rng`` draws the global rotation of the leading phi. If it is None, a generator seeded with
        ``self.seed`` is used. Every phi ends in [-pi, pi), every discrete value in the set seen in
        training, every mass at >= 0 GeV, and the objects of each prefix in :attr:`pt_ordered`
        in order of decreasing pt.
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.output_dim:
            raise ValueError(f"expected model outputs of shape [n, {self.output_dim}], got {list(z.shape)}")
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        u = z * np.asarray(self.std) + np.asarray(self.mean)
        out = np.empty((z.shape[0], len(self.columns)), dtype=np.float64)

        lead = rng.uniform(-np.pi, np.pi, size=z.shape[0]) if self.leading_phi is not None else None
        for j, name in enumerate(self._output_columns):
            kind = self.kinds[self.columns.index(name)]
            column = u[:, j]
            if kind == "pt":
                column = np.exp(column)
            elif kind == "mass":
                column = np.maximum(np.exp(column) - self.mass_offsets[name], 0.0)
            elif kind == "phi":
                column = wrap_phi(column + self.phi_offsets[name] + lead)
            elif kind == "discrete":
                allowed = np.asarray(self.discrete_values[name])
                column = allowed[np.abs(column[:, None] - allowed[None, :]).argmin(axis=1)]
            out[:, self.columns.index(name)] = column
        if lead is not None:
            out[:, self.columns.index(self.leading_phi)] = wrap_phi(lead)
        for name, value in self.constants.items():
            out[:, self.columns.index(name)] = value
        self._order_by_pt(out)
        return out

    def inverse_torch(self, z: torch.Tensor) -> torch.Tensor:
        """Map model outputs [B, output_dim] to continuous physical features [B, d], differentiably.

        Unlike :meth:`inverse`, the leading phi is set to 0, relative phis are not wrapped,
        discrete columns are not rounded and objects are not ordered by pt, so gradients flow
        to every input. Rotation-invariant observables such as the invariant mass are unaffected.
        """
        mean = torch.as_tensor(self.mean, dtype=z.dtype, device=z.device)
        std = torch.as_tensor(self.std, dtype=z.dtype, device=z.device)
        u = z * std + mean
        columns: list[torch.Tensor] = []
        for name, kind in zip(self.columns, self.kinds):
            if name == self.leading_phi:
                columns.append(torch.zeros_like(u[:, 0]))
                continue
            if name in self.constants:
                columns.append(torch.full_like(u[:, 0], self.constants[name]))
                continue
            column = u[:, self._output_columns.index(name)]
            if kind == "pt":
                column = torch.exp(column)
            elif kind == "mass":
                column = torch.clamp(torch.exp(column) - self.mass_offsets[name], min=0.0)
            elif kind == "phi":
                column = column + self.phi_offsets[name]
            columns.append(column)
        return torch.stack(columns, dim=1)

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description that :meth:`from_dict` rebuilds exactly."""
        return {
            "format": PREPROCESSING_FORMAT,
            "columns": list(self.columns),
            "kinds": list(self.kinds),
            "discrete_values": {k: list(v) for k, v in self.discrete_values.items()},
            "leading_phi": self.leading_phi,
            "phi_offsets": dict(self.phi_offsets),
            "dequantisation_widths": dict(self.dequantisation_widths),
            "mean": list(self.mean),
            "std": list(self.std),
            "seed": self.seed,
            "constants": dict(self.constants),
            "mass_offsets": dict(self.mass_offsets),
            "pt_ordered": list(self.pt_ordered),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Rebuild a pipeline from :meth:`to_dict` output, of this format or of format 1.

        A format-1 pipeline keeps its output columns and discrete values, so the models trained
        with it still fit. Its inverse orders objects by pt too, because every feature set
        selected them in that order.

        Raises:
            ConfigError: ``data`` is not a saved preprocessing of a known format.
        """
        saved_format = data.get("format")
        if saved_format != PREPROCESSING_FORMAT and saved_format not in OLD_PREPROCESSING_FORMATS:
            raise ConfigError(
                f"unsupported preprocessing format {saved_format!r} (expected {PREPROCESSING_FORMAT!r}). "
                "Refit the preprocessing with this version of cmsgen."
            )
        try:
            columns = tuple(data["columns"])
            if saved_format == PREPROCESSING_FORMAT:
                constants = {k: float(v) for k, v in data["constants"].items()}
                mass_offsets = {k: float(v) for k, v in data["mass_offsets"].items()}
                pt_ordered = tuple(str(p) for p in data["pt_ordered"])
            else:
                constants, mass_offsets, pt_ordered = {}, {}, _object_prefixes_with_pt(columns)
            pipe = cls(
                columns=columns,
                kinds=tuple(data["kinds"]),
                discrete_values={k: tuple(float(v) for v in vals) for k, vals in data["discrete_values"].items()},
                leading_phi=data["leading_phi"],
                phi_offsets={k: float(v) for k, v in data["phi_offsets"].items()},
                dequantisation_widths={k: float(v) for k, v in data["dequantisation_widths"].items()},
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                seed=int(data["seed"]),
                constants=constants,
                mass_offsets=mass_offsets,
                pt_ordered=pt_ordered,
            )
        except KeyError as error:
            raise ConfigError(f"saved preprocessing is missing the key {error.args[0]!r}. Refit the preprocessing.") from None
        _check_layout(pipe.columns, pipe.kinds, pipe.discrete_values)
        if len(pipe.mean) != pipe.output_dim or len(pipe.std) != pipe.output_dim:
            raise ConfigError(
                f"saved preprocessing has {len(pipe.mean)} means and {len(pipe.std)} standard deviations "
                f"for {pipe.output_dim} output columns. Refit the preprocessing."
            )
        missing = [c for c, k in zip(pipe.columns, pipe.kinds) if k == "mass" and c not in pipe.constants and c not in pipe.mass_offsets]
        if missing:
            raise ConfigError(f"saved preprocessing has no mass offset for the columns {missing}. Refit the preprocessing.")
        return pipe

    # ------------------------------------------------------------------ internals

    def _forward(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply every step except standardisation and return float64 [n, output_dim]."""
        out = np.empty((x.shape[0], self.output_dim), dtype=np.float64)
        lead = x[:, self.columns.index(self.leading_phi)] if self.leading_phi is not None else None
        for j, name in enumerate(self._output_columns):
            kind = self.kinds[self.columns.index(name)]
            column = x[:, self.columns.index(name)]
            if kind == "pt":
                column = np.log(column)
            elif kind == "mass":
                column = np.log(column + self.mass_offsets[name])
            elif kind == "phi":
                column = wrap_phi(column - lead - self.phi_offsets[name])
            elif kind == "discrete":
                width = self.dequantisation_widths[name]
                column = column + rng.uniform(-width, width, size=column.shape[0])
            out[:, j] = column
        return out

    def _order_by_pt(self, x: np.ndarray) -> None:
        """Reorder, in place, the objects of each prefix in ``pt_ordered`` by decreasing pt in every row."""
        for prefix in self.pt_ordered:
            objects = [o for o in group_object_columns(self.columns) if o.prefix == prefix]
            pt = x[:, [o.indices["pt"] for o in objects]]
            # A stable sort keeps the generated order of objects with equal pt.
            order = np.argsort(-pt, axis=1, kind="stable")
            for name in objects[0].indices:
                positions = [o.indices[name] for o in objects]
                x[:, positions] = np.take_along_axis(x[:, positions], order, axis=1)

    def _check_values(self, x: np.ndarray) -> None:
        """Raise NoEventsError for values that the forward steps cannot map."""
        bad = ~np.isfinite(x)
        if bad.any():
            j = int(np.nonzero(bad.any(axis=0))[0][0])
            raise NoEventsError(
                f"column {self.columns[j]!r} has {int(bad[:, j].sum())} NaN or infinite values. "
                "Drop those events before training."
            )
        for j, (name, kind) in enumerate(zip(self.columns, self.kinds)):
            if kind == "pt" and (x[:, j] <= 0).any():
                raise NoEventsError(
                    f"pt column {name!r} has {int((x[:, j] <= 0).sum())} values <= 0 GeV, but the log transform "
                    "needs positive pt. Select events with pt > 0."
                )
            if kind == "mass" and name in self.mass_offsets and (x[:, j] + self.mass_offsets[name] <= 0).any():
                raise NoEventsError(
                    f"mass column {name!r} has {int((x[:, j] + self.mass_offsets[name] <= 0).sum())} values "
                    f"<= {-self.mass_offsets[name]:.6g} GeV, below the range the preprocessing was fitted on. "
                    "Refit the preprocessing on these events or select events with larger masses."
                )
            if kind == "discrete":
                allowed = np.asarray(self.discrete_values[name])
                outside = ~np.isin(x[:, j], allowed)
                if outside.any():
                    raise NoEventsError(
                        f"discrete column {name!r} has {int(outside.sum())} values outside the allowed set "
                        f"{list(self.discrete_values[name])}, for example {x[outside, j][0]!r}. Select events with allowed values."
                    )


def make_dimuon_mass_function(
    pipe: Preprocessing, prefixes: tuple[str, str] = ("mu1", "mu2"), object_mass: float = MUON_MASS_GEV
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build a differentiable invariant mass (GeV) of two objects from preprocessed batches.

    The returned function maps model outputs [B, output_dim] to masses [B]. It needs the columns
    ``<prefix>_pt``, ``<prefix>_eta`` and ``<prefix>_phi`` of both objects. Each object's mass is
    its ``<prefix>_mass`` column when the pipeline has one, else ``object_mass`` (GeV, the muon
    mass by default). The formula is the standard one for two four-vectors built from
    (pt, eta, phi, m), written in torch because ``vector`` has no autograd backend.

    Example:
        >>> mass = make_dimuon_mass_function(pipe)
        >>> model.set_mass_function(mass)

    Raises:
        ConfigError: A needed column is missing from the pipeline.
    """
    needed = [f"{p}_{f}" for p in prefixes for f in ("pt", "eta", "phi")]
    missing = [c for c in needed if c not in pipe.columns]
    if missing:
        raise ConfigError(
            f"cannot build the invariant mass: columns {missing} are missing from the feature set "
            f"(columns: {list(pipe.columns)}). Use a two-object feature set such as 'dimuon'."
        )
    index = [pipe.columns.index(c) for c in needed]
    mass_index = [pipe.columns.index(f"{p}_mass") if f"{p}_mass" in pipe.columns else None for p in prefixes]

    def object_mass_squared(x: torch.Tensor, i: int) -> torch.Tensor | float:
        column = mass_index[i]
        return object_mass**2 if column is None else x[:, column] ** 2

    def mass(z: torch.Tensor) -> torch.Tensor:
        x = pipe.inverse_torch(z)
        pt1, eta1, phi1, pt2, eta2, phi2 = (x[:, i] for i in index)
        px = pt1 * torch.cos(phi1) + pt2 * torch.cos(phi2)
        py = pt1 * torch.sin(phi1) + pt2 * torch.sin(phi2)
        pz1 = pt1 * torch.sinh(eta1)
        pz2 = pt2 * torch.sinh(eta2)
        energy1 = torch.sqrt(pt1**2 + pz1**2 + object_mass_squared(x, 0))
        energy2 = torch.sqrt(pt2**2 + pz2**2 + object_mass_squared(x, 1))
        mass_squared = (energy1 + energy2) ** 2 - px**2 - py**2 - (pz1 + pz2) ** 2
        # The clamp keeps sqrt differentiable where rounding makes m^2 slightly negative.
        return torch.sqrt(torch.clamp(mass_squared, min=1e-6))

    return mass


def _check_layout(columns: tuple[str, ...], kinds: tuple[str, ...], discrete: Mapping[str, Sequence[float]]) -> None:
    """Raise ConfigError when columns, kinds and allowed discrete values do not match."""
    if len(columns) != len(kinds):
        raise ConfigError(f"got {len(columns)} columns but {len(kinds)} kinds. Give one kind per column.")
    if len(set(columns)) != len(columns):
        raise ConfigError(f"column names must be unique, got {list(columns)}")
    for name, kind in zip(columns, kinds):
        if kind not in KNOWN_KINDS:
            raise ConfigError(f"column {name!r} has unknown kind {kind!r} (allowed kinds: {', '.join(KNOWN_KINDS)})")
        if kind == "discrete" and not discrete.get(name):
            raise ConfigError(f"discrete column {name!r} has no allowed values. Pass them in discrete_values.")
        if kind == "discrete" and not all(math.isfinite(v) for v in discrete[name]):
            raise ConfigError(f"discrete column {name!r} has non-finite allowed values {list(discrete[name])}")


def _as_matrix(x: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(columns):
        raise ValueError(f"expected features of shape [n, {len(columns)}] for columns {list(columns)}, got {list(x.shape)}")
    return x


def _half_gap(values: Sequence[float]) -> float:
    """Return half the smallest gap between sorted allowed values, or 0.5 for a single value."""
    if len(values) < 2:
        return 0.5
    return 0.5 * float(np.min(np.diff(np.asarray(values))))


def _mass_offset(mass: np.ndarray) -> float:
    """Return the offset (GeV) that makes ``log(mass + offset)`` finite on the training masses.

    The offset is 0 when every mass is positive. Otherwise it lifts the smallest mass to the
    median distance above it, and at least to MIN_MASS_SHIFT_GEV.
    """
    smallest = float(mass.min())
    if smallest > 0:
        return 0.0
    return -smallest + max(float(np.median(mass - smallest)), MIN_MASS_SHIFT_GEV)


def _object_prefixes_with_pt(columns: Sequence[str]) -> tuple[str, ...]:
    """Return the prefixes that name at least two objects, each with a pt column."""
    counts: dict[str, int] = {}
    for item in group_object_columns(columns):
        if "pt" in item.indices:
            counts[item.prefix] = counts.get(item.prefix, 0) + 1
    return tuple(prefix for prefix, count in counts.items() if count >= 2)


def _pt_ordered_prefixes(x: np.ndarray, columns: Sequence[str]) -> tuple[str, ...]:
    """Return the object prefixes whose objects have the same fields and decreasing pt in every row of ``x``.

    A ``charge_product`` column describes the first two objects, so with one only two-object
    prefixes qualify: reordering three or more objects would change which pair it describes.
    """
    ordered = []
    for prefix in _object_prefixes_with_pt(columns):
        objects = [o for o in group_object_columns(columns) if o.prefix == prefix]
        if any(set(o.indices) != set(objects[0].indices) for o in objects):
            continue
        if "charge_product" in columns and len(objects) > 2:
            continue
        pt = x[:, [o.indices["pt"] for o in objects]]
        if (np.diff(pt, axis=1) <= 0).all():
            ordered.append(prefix)
    return tuple(ordered)
