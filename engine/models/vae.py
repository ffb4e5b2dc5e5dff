"""Variational autoencoder with a Gaussian decoder."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import zuko.nn
from torch import nn

from cmsgen.engine.models.base import GenerativeModel, Hyperparameter, clip_and_step

# Lower bound of the decoder log standard deviation, so the likelihood cannot diverge.
MIN_LOG_STD = -7.0


class VAE(GenerativeModel):
    r"""Variational autoencoder with MLP encoder and decoder and a Gaussian decoder.

    The loss is the negative evidence lower bound with a weighted KL term,
    :math:`-E_q[\log p(x|z)] + \beta_t KL(q(z|x) \| N(0, I))`, where :math:`\beta_t` rises
    linearly from 0 to ``beta`` over the first ``kl_warmup_steps`` steps. The decoder variance is
    either one learned value per feature or fixed at ``fixed_std``. Sampling draws
    :math:`z \sim N(0, I)` and then :math:`x \sim N(\mu(z), \sigma^2)`, or returns
    :math:`\mu(z)` when ``sample_noise`` is false.

    With ``mmd_weight`` > 0, the loss adds ``mmd_weight`` times the squared MMD between the
    invariant masses of as many prior samples as the batch has events and those of the batch
    (Gaussian kernels of widths ``mmd_bandwidths``, see :meth:`set_mass_function`). The ELBO
    alone fits each feature but not the narrow mass peak that their combination makes.

    References:
        | Auto-Encoding Variational Bayes (Kingma et al., 2013)
        | https://arxiv.org/abs/1312.6114
        | beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework
        | (Higgins et al., 2017) https://openreview.net/forum?id=Sy2fzU9gl

    Arguments:
        dim: Number of preprocessed features.
        latent_dim: Size of the latent vector.
        encoder_features: Hidden layer widths of the encoder.
        decoder_features: Hidden layer widths of the decoder.
        beta: Final weight of the KL term.
        kl_warmup_steps: Steps over which the KL weight rises from 0 to ``beta``. 0 starts at ``beta``.
        decoder_variance: "learned" (one trained standard deviation per feature) or "fixed".
        fixed_std: Decoder standard deviation with ``decoder_variance = "fixed"``, in standardised units.
        sample_noise: Whether samples include the decoder's Gaussian noise.
        mmd_weight: Weight of the mass MMD term. 0 turns it off.
        mmd_bandwidths: Gaussian kernel widths of the MMD, in GeV of invariant mass.
        grad_clip: Maximum gradient L2 norm.

    Example:
        >>> model = VAE(6, latent_dim=6)
        >>> model.configure_optimizers(lr=1e-3)
        >>> losses = model.training_step(torch.randn(256, 6), step=0)
        >>> model.sample(1000).shape
        torch.Size([1000, 6])
    """

    family: ClassVar[str] = "vae"
    HYPERPARAMETERS: ClassVar[dict[str, Hyperparameter]] = {
        "latent_dim": Hyperparameter(8, "int", minimum=1, help="size of the latent vector"),
        "encoder_features": Hyperparameter([128, 128], "int_list", minimum=1, help="encoder hidden widths"),
        "decoder_features": Hyperparameter([128, 128], "int_list", minimum=1, help="decoder hidden widths"),
        "beta": Hyperparameter(1.0, "float", minimum=0.0, help="final weight of the KL term"),
        "kl_warmup_steps": Hyperparameter(2000, "int", minimum=0, help="steps of the linear KL weight warm-up"),
        "decoder_variance": Hyperparameter("learned", "str", choices=("learned", "fixed"), help="decoder variance"),
        "fixed_std": Hyperparameter(
            0.1, "float", minimum=0.0, exclusive_minimum=True, help="fixed decoder standard deviation"
        ),
        "sample_noise": Hyperparameter(True, "bool", help="whether samples include the decoder noise"),
        "mmd_weight": Hyperparameter(0.0, "float", minimum=0.0, help="weight of the mass MMD term, 0 for off"),
        "mmd_bandwidths": Hyperparameter(
            [1.0, 4.0, 16.0], "float_list", minimum=0.0, exclusive_minimum=True, help="Gaussian kernel widths of the mass MMD, in GeV"
        ),
    }
    TRAINING_DEFAULTS: ClassVar[dict[str, float | int]] = {"lr": 1e-3, "batch_size": 256, "steps": 20_000}

    def __init__(self, dim: int, **hyperparameters: Any) -> None:
        super().__init__(dim, **hyperparameters)
        hp = self._hyperparameters

        self.latent_dim: int = hp["latent_dim"]
        self.beta: float = hp["beta"]
        self.kl_warmup_steps: int = hp["kl_warmup_steps"]
        self.sample_noise: bool = hp["sample_noise"]
        self.mmd_weight: float = hp["mmd_weight"]
        self.register_buffer("mmd_bandwidths", torch.tensor(hp["mmd_bandwidths"], dtype=torch.float32), persistent=False)

        self.encoder = zuko.nn.MLP(dim, 2 * self.latent_dim, hp["encoder_features"], activation=nn.SiLU)
        self.decoder = zuko.nn.MLP(self.latent_dim, dim, hp["decoder_features"], activation=nn.SiLU)

        initial_log_std = torch.full((dim,), math.log(hp["fixed_std"]))
        if hp["decoder_variance"] == "learned":
            self.log_std = nn.Parameter(torch.zeros(dim))
        else:
            self.register_buffer("log_std", initial_log_std)

    def kl_weight(self, step: int) -> float:
        """Return the KL weight at ``step``: linear from 0 to ``beta`` over ``kl_warmup_steps``."""
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, max(step, 0) / self.kl_warmup_steps)

    def forward(self, batch: torch.Tensor, prior_rows: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Encode ``batch`` [B, dim], draw one latent per event and decode it.

        Returns the posterior mean and log-variance [B, latent_dim], the decoded mean [B, dim],
        and ``prior_rows`` events decoded from the prior as ``sample`` draws them (None for 0).
        The prior events are decoded here, so that a data-parallel wrapper records every use of the decoder.
        """
        mu, log_var = self.encoder(batch).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * log_var) * self._batch_noise(tuple(mu.shape), dtype=mu.dtype)
        prior_events = None
        if prior_rows:
            prior_events = self._decode_prior(self._batch_noise((prior_rows, self.latent_dim), dtype=mu.dtype), self._batch_noise)
        return mu, log_var, self.decoder(z), prior_events

    def _decode_prior(self, z: torch.Tensor, noise: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Decode prior latents ``z``, adding the decoder noise, drawn by ``noise(shape)``, when ``sample_noise`` is on."""
        x_mean = self.decoder(z)
        if not self.sample_noise:
            return x_mean
        std = torch.exp(self.log_std.clamp(min=MIN_LOG_STD))
        return x_mean + std * noise(tuple(x_mean.shape))

    def training_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """Take one optimizer step on the negative ELBO and return the losses.

        Returns ``reconstruction`` (Gaussian negative log-likelihood per event, nats), ``kl``
        (per event, nats), ``beta`` (the KL weight used), ``mmd`` (when on), ``loss`` and ``grad_norm``.
        """
        self._check_batch(batch)
        if not self.optimizers:
            raise RuntimeError("call configure_optimizers before training_step")
        self._check_mass_function(self.mmd_weight)
        beta = self.kl_weight(step)

        prior_rows = batch.shape[0] if self.mmd_weight > 0 else 0
        mu, log_var, x_mean, prior_events = self._replica("model")(batch, prior_rows)
        log_std = self.log_std.clamp(min=MIN_LOG_STD)

        normalised = (batch - x_mean) * torch.exp(-log_std)
        reconstruction = (0.5 * normalised**2 + log_std + 0.5 * math.log(2 * math.pi)).sum(dim=1).mean()
        kl = 0.5 * (mu**2 + log_var.exp() - 1.0 - log_var).sum(dim=1).mean()
        loss = reconstruction + beta * kl
        mmd = torch.zeros((), device=batch.device)
        if prior_events is not None:
            mmd = self._mass_mmd(prior_events, batch, self.mmd_bandwidths)
            loss = loss + self.mmd_weight * self._global_gradient(mmd)

        (optimizer,) = self.optimizers
        grad_norm = clip_and_step(optimizer, loss, list(self.parameters()), self.grad_clip)

        reconstruction_value, kl_value, loss_value, grad_norm_value, mmd_value = torch.stack(
            [reconstruction.detach(), kl.detach(), loss.detach(), grad_norm.detach(), mmd.detach()]
        ).tolist()
        losses = {
            "reconstruction": reconstruction_value,
            "kl": kl_value,
            "beta": beta,
            "loss": loss_value,
            "grad_norm": grad_norm_value,
        }
        if self.mmd_weight > 0:
            losses["mmd"] = mmd_value
        return losses

    def _sample_chunk(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self._decode_prior(self._noise((n, self.latent_dim), generator), lambda shape: self._noise(shape, generator))
