"""Generative model families behind one interface: WGAN-GP, VAE and a neural spline flow.

Example:
    >>> model = build_model("flow", dim=6, transforms=4)
    >>> model.configure_optimizers(lr=1e-3)
    >>> losses = model.training_step(batch, step=0)   # batch: float32 [B, 6], preprocessed
    >>> events = model.sample(10_000)                  # float32 [10000, 6], preprocessed
"""

from __future__ import annotations

from typing import Any

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.models.base import GenerativeModel, Hyperparameter
from cmsgen.engine.models.flow import SplineFlow
from cmsgen.engine.models.gan import WGANGP
from cmsgen.engine.models.vae import VAE

MODEL_FAMILIES = ("gan", "vae", "flow")

MODEL_CLASSES: dict[str, type[GenerativeModel]] = {"gan": WGANGP, "vae": VAE, "flow": SplineFlow}


def model_class(family: str) -> type[GenerativeModel]:
    """Return the class of a model family.

    Raises:
        ConfigError: ``family`` is not one of MODEL_FAMILIES.
    """
    if family not in MODEL_CLASSES:
        raise ConfigError(f"unknown model family {family!r}: expected one of {', '.join(MODEL_FAMILIES)}")
    return MODEL_CLASSES[family]


def build_model(family: str, dim: int, **hyperparameters: Any) -> GenerativeModel:
    """Build a model of ``family`` for ``dim`` preprocessed features.

    Raises:
        ConfigError: The family, the dimension or a hyperparameter is invalid.
    """
    return model_class(family)(dim, **hyperparameters)


__all__ = [
    "MODEL_CLASSES",
    "MODEL_FAMILIES",
    "VAE",
    "WGANGP",
    "GenerativeModel",
    "Hyperparameter",
    "SplineFlow",
    "build_model",
    "model_class",
]
