"""Invertible preprocessing of feature matrices, fitted on the training split and saved as JSON.

The pipeline maps physical features (GeV, radians, discrete charges) to a float32 matrix that
generative models train on, and back:

1. ``pt`` columns: natural logarithm (so pt stays positive after inversion).
2. ``phi`` columns: the first ``phi`` column (the leading object's) is dropped. Every other
   ``phi`` becomes its difference to it, wrapped to [-pi, pi) and centred on its circular mean on
   the training split, so that back-to-back pairs do not sit on the wrap boundary. The inverse
   draws a uniform global rotation for the leading phi and wraps every phi to [-pi, pi).
3. ``discrete`` columns: dequantised with uniform noise narrower than half the gap between
   allowed values. The inverse rounds to the nearest allowed value.
4. Standardisation with the mean and standard deviation of the training split.

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

logger = logging.getLogger(__name__)

PREPROCESSING_FORMAT = "cmsgen-preprocessing/1"
KNOWN_KINDS = ("pt", "eta", "phi", "discrete", "real")
MUON_MASS_GEV = 0.1056583755

# Dequantisation noise spans this fraction of the half gap between neighbouring allowed
# values. The 10% margin keeps float32 rounding from moving a value onto the midpoint between two.
DEQUANTISATION_FRACTION = 0.9


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
        kinds: Kind of each column: "pt" (GeV), "eta", "phi" (radians), "discrete" or "real".
        discrete_values: Sorted allowed values of each discrete column.
        leading_phi: Name of the dropped leading ``phi`` column, or None without phi columns.
        phi_offsets: Circular mean (radians) of each relative phi column on the training split.
        dequantisation_widths: Half width of the uniform noise added to each discrete column.
        mean: Mean of each output column before standardisation, length ``output_dim``.
        std: Standard deviation of each output column before standardisation.
        seed: Seed of the random generator used when a call passes ``rng=None``.
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
    _output_columns: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._output_columns = tuple(c for c in self.columns if c != self.leading_phi)

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
            discrete_values: Allowed values of each "discrete" column.
            seed: Seed of the dequantisation noise drawn while fitting, and the default seed
                of later calls with ``rng=None``.

        Raises:
            ConfigError: Columns, kinds and allowed values do not match.
            NoEventsError: ``x`` is empty or contains values the pipeline cannot transform.
        """
        columns = tuple(str(c) for c in columns)
        kinds = tuple(str(k) for k in kinds)
        discrete = {str(k): tuple(sorted({float(v) for v in vals})) for k, vals in (discrete_values or {}).items()}
        _check_layout(columns, kinds, discrete)
        x = _as_matrix(x, columns)
        if x.shape[0] < 2:
            raise NoEventsError(
                f"cannot fit the preprocessing on {x.shape[0]} events: the training split needs at least 2"
            )

        phi_columns = [c for c, k in zip(columns, kinds) if k == "phi"]
        leading_phi = phi_columns[0] if phi_columns else None
        widths = {c: DEQUANTISATION_FRACTION * _half_gap(discrete[c]) for c, k in zip(columns, kinds) if k == "discrete"}

        unfitted = cls(
            columns=columns,
            kinds=kinds,
            discrete_values={c: discrete[c] for c, k in zip(columns, kinds) if k == "discrete"},
            leading_phi=leading_phi,
            phi_offsets={c: 0.0 for c in phi_columns[1:]},
            dequantisation_widths=widths,
            mean=(0.0,) * (len(columns) - (1 if leading_phi else 0)),
            std=(1.0,) * (len(columns) - (1 if leading_phi else 0)),
            seed=int(seed),
        )
        unfitted._check_values(x)

        # The circular mean of each relative phi centres its distribution in the wrapped range.
        if leading_phi is not None:
            lead = x[:, columns.index(leading_phi)]
            for name in phi_columns[1:]:
                relative = wrap_phi(x[:, columns.index(name)] - lead)
                unfitted.phi_offsets[name] = float(scipy.stats.circmean(relative, high=np.pi, low=-np.pi))

        unstandardised = unfitted._forward(x, np.random.default_rng(seed))
        mean = unstandardised.mean(axis=0)
        std = unstandardised.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        unfitted.mean = tuple(float(v) for v in mean)
        unfitted.std = tuple(float(v) for v in std)
        logger.info("fitted preprocessing on %d events: %d columns in, %d out", x.shape[0], len(columns), unfitted.output_dim)
        return unfitted

    # ------------------------------------------------------------------ properties

    @property
    def output_dim(self) -> int:
        """Number of columns after :meth:`transform`."""
        return len(self._output_columns)

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Names of the columns after :meth:`transform` (the input names minus the leading phi)."""
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
        ``self.seed`` is used. Every phi ends in [-pi, pi) and every discrete value in its allowed set.
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
            elif kind == "phi":
                column = wrap_phi(column + self.phi_offsets[name] + lead)
            elif kind == "discrete":
                allowed = np.asarray(self.discrete_values[name])
                column = allowed[np.abs(column[:, None] - allowed[None, :]).argmin(axis=1)]
            out[:, self.columns.index(name)] = column
        if lead is not None:
            out[:, self.columns.index(self.leading_phi)] = wrap_phi(lead)
        return out

    def inverse_torch(self, z: torch.Tensor) -> torch.Tensor:
        """Map model outputs [B, output_dim] to continuous physical features [B, d], differentiably.

        Unlike :meth:`inverse`, the leading phi is set to 0, relative phis are not wrapped and
        discrete columns are not rounded, so gradients flow to every input. Rotation-invariant
        observables such as the invariant mass are unaffected.
        """
        mean = torch.as_tensor(self.mean, dtype=z.dtype, device=z.device)
        std = torch.as_tensor(self.std, dtype=z.dtype, device=z.device)
        u = z * std + mean
        columns: list[torch.Tensor] = []
        for name, kind in zip(self.columns, self.kinds):
            if name == self.leading_phi:
                columns.append(torch.zeros_like(u[:, 0]))
                continue
            column = u[:, self._output_columns.index(name)]
            if kind == "pt":
                column = torch.exp(column)
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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Rebuild a pipeline from :meth:`to_dict` output.

        Raises:
            ConfigError: ``data`` is not a saved preprocessing of this format.
        """
        if data.get("format") != PREPROCESSING_FORMAT:
            raise ConfigError(
                f"unsupported preprocessing format {data.get('format')!r} (expected {PREPROCESSING_FORMAT!r}). "
                "Refit the preprocessing with this version of cmsgen."
            )
        try:
            pipe = cls(
                columns=tuple(data["columns"]),
                kinds=tuple(data["kinds"]),
                discrete_values={k: tuple(float(v) for v in vals) for k, vals in data["discrete_values"].items()},
                leading_phi=data["leading_phi"],
                phi_offsets={k: float(v) for k, v in data["phi_offsets"].items()},
                dequantisation_widths={k: float(v) for k, v in data["dequantisation_widths"].items()},
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                seed=int(data["seed"]),
            )
        except KeyError as error:
            raise ConfigError(f"saved preprocessing is missing the key {error.args[0]!r}. Refit the preprocessing.") from None
        _check_layout(pipe.columns, pipe.kinds, pipe.discrete_values)
        if len(pipe.mean) != pipe.output_dim or len(pipe.std) != pipe.output_dim:
            raise ConfigError(
                f"saved preprocessing has {len(pipe.mean)} means and {len(pipe.std)} standard deviations "
                f"for {pipe.output_dim} output columns. Refit the preprocessing."
            )
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
            elif kind == "phi":
                column = wrap_phi(column - lead - self.phi_offsets[name])
            elif kind == "discrete":
                width = self.dequantisation_widths[name]
                column = column + rng.uniform(-width, width, size=column.shape[0])
            out[:, j] = column
        return out

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
