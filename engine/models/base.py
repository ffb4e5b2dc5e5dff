"""The interface shared by every generative model family, and hyperparameter validation."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed
from torch import nn

from cmsgen.engine.errors import ConfigError

MassFunction = Callable[[torch.Tensor], torch.Tensor]

# Events generated per forward pass in ``sample``. Chunks this small keep activations in the CPU
# cache: for 128-wide MLPs, torch 2.13 on a 2-core CPU generated about 3x more events per second
# than with 65,536. Memory stays at about SAMPLE_CHUNK_SIZE x (widest layer) x 4 bytes per layer.
SAMPLE_CHUNK_SIZE = 16_384


@dataclass(frozen=True)
class Hyperparameter:
    """Type, default and allowed range of one hyperparameter.

    Arguments:
        default: Value used when the caller gives none.
        kind: One of "int", "float", "bool", "str", "int_list" or "float_list" (non-empty lists).
        minimum: Smallest allowed number (for a list, the smallest allowed item).
        maximum: Largest allowed number.
        exclusive_minimum: Whether ``minimum`` itself is rejected.
        choices: Allowed values of a "str" hyperparameter.
        help: Description of what the value sets, with its unit.
    """

    default: Any
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def describe(self) -> str:
        """Describe the allowed values in words, for error messages."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = {
            "int": "an integer",
            "float": "a number",
            "int_list": "a non-empty list of integers",
            "float_list": "a non-empty list of numbers",
        }[self.kind]
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
        if not bounds:
            return noun
        if self.kind.endswith("_list"):
            return f"{noun}, each {' and '.join(bounds)}"
        return f"{noun} {' and '.join(bounds)}"

    def validate(self, family: str, name: str, value: Any) -> Any:
        """Convert ``value`` to the canonical type of ``kind`` and return it.

        Raises ConfigError when the value is invalid. The message names the config key
        ``model.<name>``, because hyperparameters come from a config's ``[model]`` table.
        """

        def reject() -> ConfigError:
            return ConfigError(
                f"model.{name} = {value!r} is invalid: expected {self.describe()} for the {family} hyperparameter {name!r}"
            )

        if self.kind == "bool":
            if not isinstance(value, bool):
                raise reject()
            return value
        if self.kind == "str":
            if not isinstance(value, str) or value not in self.choices:
                raise reject()
            return value
        if self.kind in ("int_list", "float_list"):
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise reject()
            items = list(value)
            is_item = _is_int if self.kind == "int_list" else _is_number
            if not items or not all(is_item(v) and self._in_range(v) for v in items):
                raise reject()
            return [int(v) for v in items] if self.kind == "int_list" else [float(v) for v in items]
        if self.kind == "int":
            if not _is_int(value) or not self._in_range(value):
                raise reject()
            return int(value)
        if not _is_number(value) or not self._in_range(value):
            raise reject()
        return float(value)

    def _in_range(self, value: float) -> bool:
        if self.minimum is not None:
            if value < self.minimum or (self.exclusive_minimum and value == self.minimum):
                return False
        return self.maximum is None or value <= self.maximum


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


COMMON_HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "grad_clip": Hyperparameter(
        10.0, "float", minimum=0.0, exclusive_minimum=True, help="maximum gradient L2 norm before each optimizer step"
    ),
}


class GenerativeModel(nn.Module):
    """Base class of the generative model families.

    A subclass sets ``family`` and ``HYPERPARAMETERS``, builds its networks in ``__init__`` and
    implements :meth:`training_step` and :meth:`sample`. Models work in the preprocessed space:
    batches and samples are standardised float32 feature matrices [B, dim].

    Arguments:
        dim: Number of preprocessed features.
        hyperparameters: Values for the family's ``HYPERPARAMETERS``. Missing ones take their defaults.

    Raises:
        ConfigError: ``dim`` is not a positive integer, or a hyperparameter is unknown or invalid.
    """

    family: ClassVar[str] = ""
    HYPERPARAMETERS: ClassVar[dict[str, Hyperparameter]] = {}
    # Suggested training settings for the default hyperparameters ("lr", "batch_size", "steps"),
    # for the trainer's config defaults. They come from short CPU runs on the 2011 Z -> mu mu CSV.
    TRAINING_DEFAULTS: ClassVar[dict[str, float | int]] = {}

    def __init__(self, dim: int, **hyperparameters: Any) -> None:
        super().__init__()
        if not _is_int(dim) or dim < 1:
            raise ConfigError(f"invalid feature dimension {dim!r} for the {self.family} model: expected an integer >= 1")
        self.dim = int(dim)
        self._hyperparameters = resolve_hyperparameters(self.family, self.all_hyperparameters(), hyperparameters)
        self.grad_clip: float = self._hyperparameters["grad_clip"]
        self.optimizers: list[torch.optim.Optimizer] = []
        self._mass_function: MassFunction | None = None

        # Data-parallel state, set by ``set_data_parallel``. A plain dict, so the wrappers are not
        # registered as submodules and the state dict keeps its keys without a "module." prefix.
        self._replicas: dict[str, nn.Module] = {}
        self._rank = 0
        self._world_size = 1

    @classmethod
    def all_hyperparameters(cls) -> dict[str, Hyperparameter]:
        """Return the specification of every hyperparameter of this family, common ones included."""
        return {**COMMON_HYPERPARAMETERS, **cls.HYPERPARAMETERS}

    @classmethod
    def default_hyperparameters(cls) -> dict[str, Any]:
        """Return the default value of every hyperparameter of this family."""
        return {name: spec.default for name, spec in cls.all_hyperparameters().items()}

    def hyperparameters(self) -> dict[str, Any]:
        """Return the resolved hyperparameters as JSON-serialisable values that ``build_model`` accepts."""
        return {name: list(value) if isinstance(value, list) else value for name, value in self._hyperparameters.items()}

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    def set_mass_function(self, fn: MassFunction | None) -> None:
        """Set the differentiable map from preprocessed batches [B, dim] to invariant masses [B] (GeV)."""
        self._mass_function = fn

    def _check_mass_function(self, mmd_weight: float) -> None:
        """Raise ConfigError when the mass MMD term is on but the feature set has no differentiable mass."""
        if mmd_weight > 0 and self._mass_function is None:
            raise ConfigError(
                f"model.mmd_weight = {mmd_weight} is invalid: this feature set has no differentiable "
                "invariant mass of two objects. Set mmd_weight = 0."
            )

    def _mass_mmd(self, generated: torch.Tensor, real: torch.Tensor, bandwidths: torch.Tensor) -> torch.Tensor:
        """Return the biased squared MMD between the masses of ``generated`` and ``real`` (Gaussian kernels).

        ``bandwidths`` are the kernel widths in GeV. With several ranks, the MMD is that of the
        whole global batch: the masses of the other ranks' rows are gathered without gradients.
        """
        assert self._mass_function is not None
        generated_mass = self._gather_over_ranks(self._mass_function(generated))
        real_mass = self._gather_over_ranks(self._mass_function(real).detach())
        samples = torch.cat([generated_mass, real_mass])[:, None]
        distances = (samples - samples.T) ** 2
        kernel = sum(torch.exp(-distances / (2 * width**2)) for width in bandwidths)
        n = generated_mass.shape[0]
        return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()

    def _global_gradient(self, value: torch.Tensor) -> torch.Tensor:
        """Return ``value`` with its gradient scaled by the world size, for a term computed over the global batch.

        Each rank differentiates such a term through its own rows only, and the data-parallel
        wrapper averages the ranks' gradients. Scaling the gradient (not the value) by the world
        size makes that average the gradient of the global term.
        """
        if self._world_size == 1:
            return value
        return value + (self._world_size - 1) * (value - value.detach())

    def data_parallel_modules(self) -> dict[str, nn.Module]:
        """Return the networks to wrap in ``DistributedDataParallel``, by name.

        By default the whole model is one network, and its ``forward`` runs once per training step.
        A family whose optimizers update separate networks returns one entry per network.
        """
        return {"model": self}

    def set_data_parallel(self, replicas: dict[str, nn.Module], rank: int, world_size: int) -> None:
        """Use ``replicas`` (the wrapped ``data_parallel_modules``) in ``training_step``.

        Each rank then trains on its ``1 / world_size`` share of every global batch, and draws
        the noise of the whole global batch so that it keeps only the rows of its share.
        """
        if set(replicas) != set(self.data_parallel_modules()):
            raise ValueError(f"expected replicas for {sorted(self.data_parallel_modules())}, got {sorted(replicas)}")
        # NOTE: the model cannot be deep-copied from here on, because the wrappers contain the process group.
        self._replicas = dict(replicas)
        self._rank = rank
        self._world_size = world_size

    def _replica(self, name: str) -> nn.Module:
        """Return the network ``name`` to call in a training step: its data-parallel wrapper, if any."""
        replica = self._replicas.get(name)
        return replica if replica is not None else self.data_parallel_modules()[name]

    def _batch_noise(self, shape: tuple[int, ...], *, uniform: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Draw training noise of ``shape`` whose first dimension is this rank's batch size.

        Every rank draws the noise of the whole global batch from the global generator and keeps
        its own rows. A run with several ranks so uses the same numbers as one process, and the
        generator states of all ranks stay equal. ``uniform`` draws from U(0, 1) instead of N(0, 1).
        """
        rows = shape[0]
        draw = torch.rand if uniform else torch.randn
        noise = draw((rows * self._world_size, *shape[1:]), device=self.device, dtype=dtype)
        if self._world_size == 1:
            return noise
        return noise[self._rank * rows : (self._rank + 1) * rows]

    def _mean_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average ``tensor`` in place over the ranks of a data-parallel run and return it."""
        if self._world_size > 1:
            torch.distributed.all_reduce(tensor)
            tensor.div_(self._world_size)
        return tensor

    def _gather_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate ``tensor`` [rows, ...] of every rank in rank order, keeping gradients for this rank's rows only."""
        if self._world_size == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self._world_size)]
        torch.distributed.all_gather(parts, tensor.detach().contiguous())
        parts[self._rank] = tensor
        return torch.cat(parts)

    def configure_optimizers(self, lr: float, weight_decay: float = 0.0) -> list[torch.optim.Optimizer]:
        """Create one AdamW optimizer over all parameters and store it in ``self.optimizers``."""
        check_learning_rate(lr, weight_decay)
        self.optimizers = [torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)]
        return self.optimizers

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """Run one optimisation step on ``batch`` [B, dim] and return the named losses as floats."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` events [n, dim] in the preprocessed space, in chunks of SAMPLE_CHUNK_SIZE."""
        if not _is_int(n) or n < 0:
            raise ValueError(f"invalid number of events to sample {n!r}: expected a non-negative integer")
        was_training = self.training
        self.eval()
        try:
            chunks = [
                self._sample_chunk(min(SAMPLE_CHUNK_SIZE, n - start), generator)
                for start in range(0, n, SAMPLE_CHUNK_SIZE)
            ]
        finally:
            self.train(was_training)
        if not chunks:
            return torch.empty(0, self.dim, device=self.device)
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]

    def _sample_chunk(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _check_batch(self, batch: torch.Tensor) -> None:
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"expected a batch of shape [B, {self.dim}], got {list(batch.shape)}")

    def _noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=self.device)


def resolve_hyperparameters(
    family: str, specs: Mapping[str, Hyperparameter], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate ``given`` against ``specs`` and fill in defaults.

    Raises:
        ConfigError: A name is unknown or a value is outside its allowed range.
    """
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ConfigError(
            f"model.{unknown[0]} is not a known key: {unknown[0]!r} is not a {family} hyperparameter "
            f"(allowed: family, {', '.join(sorted(specs))})"
        )
    resolved = {}
    for name, spec in specs.items():
        resolved[name] = spec.validate(family, name, given[name]) if name in given else copy.deepcopy(spec.default)
    return resolved


def check_learning_rate(lr: float, weight_decay: float) -> None:
    """Raise ConfigError unless ``lr`` > 0 and ``weight_decay`` >= 0 are finite numbers."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"invalid learning rate {lr!r}: expected a number > 0, such as 1e-3")
    if (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, (int, float))
        or not math.isfinite(weight_decay)
        or weight_decay < 0
    ):
        raise ConfigError(f"invalid weight decay {weight_decay!r}: expected a number >= 0")


def clip_and_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Backpropagate ``loss``, clip the gradients of ``parameters`` and step ``optimizer``.

    Returns the gradient L2 norm before clipping, as a tensor (no device sync).
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    optimizer.step()
    return norm
