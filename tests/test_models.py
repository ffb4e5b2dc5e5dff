"""Tests of the three model families, trained for a few hundred steps on real dimuon events (CMS 2010 Run B)."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.stats
import torch

from cmsgen.engine.errors import ConfigError
from cmsgen.engine.features import FeatureTable, load_features
from cmsgen.engine.features.preprocessing import Preprocessing, make_dimuon_mass_function
from cmsgen.engine.models import MODEL_FAMILIES, GenerativeModel, build_model

# Small networks so that every family trains in a few seconds on two CPU cores.
SMALL: dict[str, dict[str, Any]] = {
    "gan": {
        "latent_dim": 8,
        "generator_features": [64, 64],
        "critic_features": [64, 64],
        "n_critic": 2,
        "ema_decay": 0.9,
    },
    "vae": {"latent_dim": 4, "encoder_features": [64, 64], "decoder_features": [64, 64], "kl_warmup_steps": 100},
    "flow": {"transforms": 2, "hidden_features": [32, 32], "bins": 8},
}
LEARNING_RATES = {"gan": 1e-3, "vae": 3e-3, "flow": 3e-3}
TRAINING_STEPS = 300
BATCH_SIZE = 256


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Run these small networks on one intra-op thread.

    On a loaded two-core machine, two OpenMP threads spin against each other and cost about ten
    times the CPU time of one thread for 64-wide layers.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def zmumu(cms_data: Path) -> FeatureTable:
    return load_features([cms_data / "uproot-Zmumu.root"], "dimuon")


@pytest.fixture(scope="module")
def pipe(zmumu: FeatureTable) -> Preprocessing:
    return Preprocessing.fit(zmumu.values, zmumu.columns, zmumu.kinds, zmumu.feature_set.discrete_values)


@pytest.fixture(scope="module")
def batches(zmumu: FeatureTable, pipe: Preprocessing) -> torch.Tensor:
    """Preprocessed real events, float32 [n, 6]."""
    return torch.as_tensor(pipe.transform(zmumu.values, np.random.default_rng(0)))


def feature_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over columns of the 1D Wasserstein-1 distance, in standardised units."""
    return float(np.mean([scipy.stats.wasserstein_distance(a[:, j].numpy(), b[:, j].numpy()) for j in range(a.shape[1])]))


def train(model: GenerativeModel, data: torch.Tensor, steps: int, lr: float) -> list[dict[str, float]]:
    model.configure_optimizers(lr=lr)
    generator = torch.Generator().manual_seed(0)
    history = []
    for step in range(steps):
        index = torch.randint(0, data.shape[0], (BATCH_SIZE,), generator=generator)
        history.append(model.training_step(data[index], step))
    return history


@pytest.fixture(scope="module")
def trained(batches: torch.Tensor) -> dict[str, tuple[GenerativeModel, list[dict[str, float]], float]]:
    """Return each family trained for TRAINING_STEPS steps, with its loss history and its untrained distance."""
    results = {}
    for family in MODEL_FAMILIES:
        torch.manual_seed(0)
        model = build_model(family, batches.shape[1], **SMALL[family])
        untrained = feature_distance(model.sample(5_000, torch.Generator().manual_seed(1)), batches)
        history = train(model, batches, TRAINING_STEPS, LEARNING_RATES[family])
        results[family] = (model, history, untrained)
    return results


EXPECTED_LOSSES = {
    "gan": {"loss_critic", "loss_generator", "gradient_penalty", "wasserstein", "loss", "grad_norm"},
    "vae": {"reconstruction", "kl", "beta", "loss", "grad_norm"},
    "flow": {"nll", "loss", "grad_norm"},
}


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_losses_named_and_finite(trained: dict, family: str) -> None:
    _, history, _ = trained[family]

    assert set(history[-1]) == EXPECTED_LOSSES[family]
    for losses in history:
        assert all(isinstance(value, float) for value in losses.values())
        assert all(np.isfinite(value) for value in losses.values())


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_loss_falls(trained: dict, family: str) -> None:
    _, history, _ = trained[family]
    losses = np.array([step["loss"] for step in history])
    first, last = losses[:20].mean(), losses[-20:].mean()

    # The loss must fall by at least a quarter of its spread over the run, which is robust to noise.
    margin = 0.25 * (losses.max() - losses.min())
    assert last < first - margin, f"{family} loss went from {first:.3f} to {last:.3f} (margin {margin:.3f})"


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_samples_approach_data(trained: dict, batches: torch.Tensor, family: str) -> None:
    model, _, untrained = trained[family]
    distance = feature_distance(model.sample(5_000, torch.Generator().manual_seed(1)), batches)

    # The VAE starts closest, because its untrained decoder noise already has unit variance.
    assert distance < 0.8 * untrained, f"{family}: distance {distance:.3f}, untrained {untrained:.3f}"


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_sample_shape_finite_deterministic(trained: dict, batches: torch.Tensor, family: str) -> None:
    model, _, _ = trained[family]
    first = model.sample(3_000, torch.Generator().manual_seed(42))
    again = model.sample(3_000, torch.Generator().manual_seed(42))
    other = model.sample(3_000, torch.Generator().manual_seed(43))

    assert first.shape == (3_000, batches.shape[1])
    assert first.dtype == torch.float32
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert model.sample(0).shape == (0, batches.shape[1])


def test_sample_across_chunks_deterministic(trained: dict) -> None:
    model, _, _ = trained["vae"]
    n = 40_000  # more than two sampling chunks

    first = model.sample(n, torch.Generator().manual_seed(5))
    again = model.sample(n, torch.Generator().manual_seed(5))

    assert first.shape[0] == n
    assert torch.equal(first, again)


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_state_dict_round_trip(trained: dict, tmp_path: Path, family: str) -> None:
    model, _, _ = trained[family]
    hyperparameters = json.loads(json.dumps(model.hyperparameters()))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)

    rebuilt = build_model(family, model.dim, **hyperparameters)
    rebuilt.load_state_dict(torch.load(path, weights_only=True))

    expected = model.sample(2_000, torch.Generator().manual_seed(7))
    assert torch.equal(rebuilt.sample(2_000, torch.Generator().manual_seed(7)), expected)
    assert rebuilt.hyperparameters() == model.hyperparameters()


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_physical_samples_valid(trained: dict, pipe: Preprocessing, family: str) -> None:
    model, _, _ = trained[family]
    events = pipe.inverse(model.sample(5_000, torch.Generator().manual_seed(2)).numpy(), np.random.default_rng(0))
    columns = list(pipe.columns)

    assert events.shape == (5_000, len(columns))
    assert np.isfinite(events).all()
    assert (events[:, columns.index("mu1_pt")] > 0).all()
    assert np.abs(events[:, columns.index("mu2_phi")]).max() <= np.pi
    assert set(np.unique(events[:, columns.index("charge_product")])) <= {-1.0, 1.0}


MMD_SETTINGS = {"gan": {"mmd_weight": 1.0, "n_critic": 1}, "vae": {"mmd_weight": 10.0}}


@pytest.mark.parametrize("family", sorted(MMD_SETTINGS))
def test_mass_mmd_term(batches: torch.Tensor, pipe: Preprocessing, family: str) -> None:
    torch.manual_seed(0)
    model = build_model(family, batches.shape[1], **{**SMALL[family], **MMD_SETTINGS[family]})
    model.set_mass_function(make_dimuon_mass_function(pipe))
    history = train(model, batches, 20, LEARNING_RATES[family])

    assert "mmd" in history[-1]
    assert all(np.isfinite(step["mmd"]) for step in history)
    assert all(step["mmd"] >= 0 for step in history)


@pytest.mark.parametrize("family", sorted(MMD_SETTINGS))
def test_mmd_needs_mass_function(batches: torch.Tensor, family: str) -> None:
    model = build_model(family, batches.shape[1], **{**SMALL[family], **MMD_SETTINGS[family]})
    model.configure_optimizers(lr=1e-3)

    with pytest.raises(ConfigError, match="mmd_weight"):
        model.training_step(batches[:64], 0)


def test_vae_mmd_off_reports_no_mmd(trained) -> None:  # type: ignore[no-untyped-def]
    _, history, _ = trained["vae"]

    assert "mmd" not in history[-1]


def test_vae_mmd_moves_sample_masses(batches: torch.Tensor, pipe: Preprocessing) -> None:
    """The MMD term pulls the masses of prior samples towards the batch's, which the ELBO alone does not do in a few steps."""
    mass = make_dimuon_mass_function(pipe)
    real_mass = mass(batches).numpy()
    distances = {}
    for weight in (0.0, 10.0):
        torch.manual_seed(0)
        model = build_model("vae", batches.shape[1], **{**SMALL["vae"], "mmd_weight": weight, "sample_noise": False})
        model.set_mass_function(mass)
        train(model, batches, 150, LEARNING_RATES["vae"])
        with torch.no_grad():
            generated_mass = mass(model.sample(5_000, torch.Generator().manual_seed(2))).numpy()
        distances[weight] = scipy.stats.wasserstein_distance(generated_mass, real_mass)

    assert distances[10.0] < 0.5 * distances[0.0]


def test_gan_generator_updates_every_n_critic(batches: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = build_model("gan", batches.shape[1], **{**SMALL["gan"], "n_critic": 3})
    history = train(model, batches, 7, 1e-3)
    generator_losses = [step["loss_generator"] for step in history]

    # Steps 0, 3 and 6 update the generator, and the steps between repeat the latest value.
    assert generator_losses[1] == generator_losses[0]
    assert generator_losses[2] == generator_losses[0]
    assert generator_losses[3] != generator_losses[2]
    assert int(model.generator_ema.n_averaged) == 3


def test_vae_kl_warmup_linear(batches: torch.Tensor) -> None:
    model = build_model("vae", batches.shape[1], **{**SMALL["vae"], "kl_warmup_steps": 10, "beta": 0.5})
    history = train(model, batches, 12, 1e-3)

    assert history[0]["beta"] == 0.0
    assert history[5]["beta"] == pytest.approx(0.25)
    assert history[10]["beta"] == pytest.approx(0.5)
    assert history[11]["beta"] == pytest.approx(0.5)


def test_vae_fixed_variance_has_no_parameter(batches: torch.Tensor) -> None:
    model = build_model("vae", batches.shape[1], decoder_variance="fixed", fixed_std=0.2)
    names = {name for name, _ in model.named_parameters()}

    assert "log_std" not in names
    assert torch.allclose(model.log_std.exp(), torch.full((batches.shape[1],), 0.2))


BAD_HYPERPARAMETERS = [
    ("gan", "latent_dim", 0),
    ("gan", "latent_dim", 2.5),
    ("gan", "generator_features", []),
    ("gan", "critic_features", [64, -1]),
    ("gan", "n_critic", "five"),
    ("gan", "gp_lambda", -1.0),
    ("gan", "mmd_weight", float("nan")),
    ("gan", "mmd_bandwidths", [0.0]),
    ("gan", "ema_decay", 1.5),
    ("gan", "grad_clip", 0.0),
    ("vae", "beta", -0.1),
    ("vae", "kl_warmup_steps", -5),
    ("vae", "decoder_variance", "per-event"),
    ("vae", "fixed_std", 0),
    ("vae", "sample_noise", "yes"),
    ("flow", "transforms", 0),
    ("flow", "bins", 1),
    ("flow", "hidden_features", "128"),
    ("flow", "autoregressive", 1),
]


@pytest.mark.parametrize(("family", "key", "value"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameter_rejected(family: str, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'") as info:
        build_model(family, 6, **{key: value})

    assert "expected" in info.value.message
    assert info.value.exit_code == 5


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_unknown_hyperparameter_rejected(family: str) -> None:
    with pytest.raises(ConfigError, match="'hidden_size'") as info:
        build_model(family, 6, hidden_size=64)

    assert "allowed" in info.value.message


def test_unknown_family_rejected() -> None:
    with pytest.raises(ConfigError, match="'diffusion'"):
        build_model("diffusion", 6)


@pytest.mark.parametrize("dim", [0, -2, 3.0])
def test_bad_dimension_rejected(dim: Any) -> None:
    with pytest.raises(ConfigError, match="dimension"):
        build_model("flow", dim)


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("inf")])
def test_bad_learning_rate_rejected(lr: float) -> None:
    model = build_model("vae", 6)

    with pytest.raises(ConfigError, match="learning rate"):
        model.configure_optimizers(lr=lr)


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_defaults_json_and_rebuild(family: str) -> None:
    model = build_model(family, 6)
    hyperparameters = json.loads(json.dumps(model.hyperparameters()))

    assert build_model(family, 6, **hyperparameters).hyperparameters() == hyperparameters
    assert model.grad_clip == 10.0
    assert len(model.configure_optimizers(lr=1e-3)) == (2 if family == "gan" else 1)
    assert model.optimizers
