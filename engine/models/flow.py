"""Neural spline flow trained by maximum likelihood, built on zuko."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import zuko.flows

from cmsgen.engine.models.base import GenerativeModel, Hyperparameter, clip_and_step


class SplineFlow(GenerativeModel):
    r"""Neural spline flow with monotonic rational-quadratic spline transforms (``zuko.flows.NSF``).

    Training minimises the negative log-likelihood :math:`-E[\log p_\theta(x)]`. With
    ``autoregressive = false`` each transform is a coupling layer (zuko's ``passes=2``), so
    sampling inverts each transform in one pass. Fully autoregressive transforms are more
    expressive but need ``dim`` passes per transform to sample. Splines act on [-5, 5] and are
    the identity outside it, which suits standardised inputs.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Arguments:
        dim: Number of preprocessed features.
        transforms: Number of spline transforms.
        hidden_features: Hidden layer widths of each transform's conditioner network.
        bins: Number of spline bins.
        autoregressive: Whether transforms are fully autoregressive instead of coupling layers.
        grad_clip: Maximum gradient L2 norm.

    Example:
        >>> model = SplineFlow(6, transforms=4)
        >>> model.configure_optimizers(lr=1e-3)
        >>> losses = model.training_step(torch.randn(256, 6), step=0)
        >>> model.sample(1000).shape
        torch.Size([1000, 6])
    """

    family: ClassVar[str] = "flow"
    HYPERPARAMETERS: ClassVar[dict[str, Hyperparameter]] = {
        "transforms": Hyperparameter(6, "int", minimum=1, help="number of spline transforms"),
        "hidden_features": Hyperparameter([128, 128], "int_list", minimum=1, help="conditioner hidden widths"),
        "bins": Hyperparameter(8, "int", minimum=2, help="number of spline bins"),
        "autoregressive": Hyperparameter(False, "bool", help="fully autoregressive transforms instead of coupling"),
    }
    TRAINING_DEFAULTS: ClassVar[dict[str, float | int]] = {"lr": 1e-3, "batch_size": 256, "steps": 10_000}

    def __init__(self, dim: int, **hyperparameters: Any) -> None:
        super().__init__(dim, **hyperparameters)
        hp = self._hyperparameters

        # A coupling layer needs at least two features to split. With one feature, the
        # autoregressive form is the same single pass.
        passes = None if hp["autoregressive"] or dim < 2 else 2
        self.flow = zuko.flows.NSF(
            features=dim,
            transforms=hp["transforms"],
            hidden_features=hp["hidden_features"],
            bins=hp["bins"],
            passes=passes,
        )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the log-density of ``x`` [B, dim] in the preprocessed space, shape [B]."""
        return self.flow().log_prob(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the log-density of ``x`` [B, dim], shape [B], the quantity that training maximises."""
        return self.log_prob(x)

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """Take one maximum-likelihood step and return ``nll`` (nats per event), ``loss`` and ``grad_norm``."""
        self._check_batch(batch)
        if not self.optimizers:
            raise RuntimeError("call configure_optimizers before training_step")
        nll = -self._replica("model")(batch).mean()

        (optimizer,) = self.optimizers
        grad_norm = clip_and_step(optimizer, nll, list(self.parameters()), self.grad_clip)

        nll_value, grad_norm_value = torch.stack([nll.detach(), grad_norm.detach()]).tolist()
        return {"nll": nll_value, "loss": nll_value, "grad_norm": grad_norm_value}

    def _sample_chunk(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        # The base distribution of zuko's NSF is a standard normal, so drawing it with the caller's
        # generator and inverting the transform keeps sampling reproducible.
        distribution = self.flow()
        return distribution.transform.inv(self._noise((n, self.dim), generator))
