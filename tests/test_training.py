"""The trainer, configs, splits, checkpoints and run directories, on real CMS files.

Every run here is a real, short training run on CPU with small networks (a few hundred
steps at most). The module takes about two minutes on two CPU cores.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cmsgen.engine.errors import ConfigError, DataNotFoundError, NoEventsError, RunFailedError, UnreadableFileError
from cmsgen.engine.features import load_features
from cmsgen.engine.training import checkpoint as checkpoint_module
from cmsgen.engine.training.config import dumps_toml, load_config, parse_config
from cmsgen.engine.training.runs import RunDirectory, list_runs
from cmsgen.engine.training.splits import make_splits
from cmsgen.engine.training.trainer import Progress, Trainer, create_run_directory, resume_run, start_run

SMALL_MODELS: dict[str, dict[str, Any]] = {
    "gan": {"generator_features": [32, 32], "critic_features": [32, 32], "n_critic": 5, "ema_decay": 0.9},
    "vae": {"encoder_features": [32, 32], "decoder_features": [32, 32], "kl_warmup_steps": 0},
    "flow": {"transforms": 2, "hidden_features": [32, 32], "bins": 6},
}


def write_config(
    folder: Path,
    data_path: Path,
    family: str,
    *,
    model: dict[str, Any] | None = None,
    **training: Any,
) -> Path:
    """Write a TOML config for a small model and return its path."""
    table = {
        "data": {"paths": [str(data_path)], "feature_set": "dimuon"},
        "model": {"family": family, **SMALL_MODELS[family], **(model or {})},
        "training": {"epochs": 2, "batch_size": 128, "lr": 1e-3, "log_every": 5, "metric_events": 500, **training},
    }
    path = folder / f"{family}.toml"
    path.write_text(dumps_toml(table), encoding="utf-8")
    return path


def steps_per_epoch(data_path: Path, batch_size: int) -> int:
    """Return the trainer's steps per epoch on ``data_path`` with the default split fractions."""
    values = load_features([data_path], "dimuon").values
    n_train = len(make_splits(values, ("x",) * values.shape[1], val_fraction=0.1, test_fraction=0.1, seed=0).train)
    return max(1, n_train // min(batch_size, n_train))


def loss_series(run: RunDirectory, key: str = "loss") -> list[float]:
    return [record[key] for record in run.metrics() if key in record]


# ---------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("training", "batch_size", -4, "training.batch_size = -4 is invalid: expected an integer >= 1"),
        ("training", "batch_size", 12.5, "training.batch_size = 12.5 is invalid"),
        ("training", "lr", "fast", "training.lr = 'fast' is invalid"),
        ("training", "lr", 0.0, "training.lr = 0.0 is invalid: expected a finite number > 0"),
        ("training", "device", "tpu", "training.device = 'tpu' is invalid: expected one of auto, cpu, cuda, mps"),
        ("training", "scheduler", "linear", "training.scheduler = 'linear' is invalid"),
        ("training", "epoch", 3, "training.epoch is not a known key"),
        ("training", "val_fraction", 0.6, "is invalid: expected a sum below 1"),
        ("model", "family", "diffusion", "model.family = 'diffusion' is invalid"),
        ("data", "max_events", -1, "data.max_events = -1 is invalid"),
        ("data", "feature_set", "trimuon", "'trimuon' is unknown"),
        ("data", "dask", "host:8786", "data.dask = 'host:8786' is invalid"),
        ("data", "layout_file", 3, "data.layout_file = 3 is invalid"),
        ("data", "options", {"opposite_charge": "yes"}, "data.options.opposite_charge = 'yes' is invalid"),
        ("model", "n_critics", 5, "model.n_critics is not a known key"),
        ("model", "latent_dim", 0, "model.latent_dim = 0 is invalid: expected an integer >= 1"),
        ("model", "ema_decay", 1.5, "model.ema_decay = 1.5 is invalid"),
        ("model", "n_critic", True, "model.n_critic = True is invalid"),
        ("validation", "pass_factr", 2.0, "validation.pass_factr is not a known key"),
        ("validation", "bins", -3, "bins = -3 is invalid"),
    ],
)
def test_config_rejects_invalid_value(tmp_path: Path, section: str, key: str, value: Any, expected: str) -> None:
    table: dict[str, Any] = {
        "data": {"paths": ["events.root"]},
        "model": {"family": "gan"},
        "training": {"test_fraction": 0.5},
        "validation": {},
    }
    table[section][key] = value

    with pytest.raises(ConfigError) as caught:
        parse_config(table, base_dir=tmp_path)

    assert expected in caught.value.message
    assert caught.value.exit_code == 5


def test_config_rejects_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trainer is not a known key"):
        parse_config({"data": {"paths": ["a.root"]}, "model": {"family": "vae"}, "trainer": {}}, base_dir=tmp_path)


def test_config_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="not found") as missing:
        load_config(tmp_path / "absent.toml")
    assert missing.value.exit_code == 3
    broken = tmp_path / "broken.toml"
    broken.write_text("[training\nepochs = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(broken)


def test_config_paths_relative_to_file(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "c.toml"
    path.write_text('[data]\npaths = ["../data/events.root"]\n[model]\nfamily = "flow"\n', encoding="utf-8")

    config = load_config(path)

    assert config.data.paths == (str(tmp_path / "data" / "events.root"),)
    assert config.training.epochs == 20


def test_config_toml_round_trip(tmp_path: Path) -> None:
    config = parse_config(
        {
            "data": {
                "paths": ['/x/a "quoted" name.root'],
                "options": {"opposite_charge": False, "min_pt": 5.0},
                "layout_file": "/x/layout.toml",
            },
            "model": {"family": "gan", "generator_features": [8, 8], "mmd_weight": 0.5},
            "training": {"epochs": 3, "scheduler": "cosine"},
            "validation": {"pass_factor": 1.5, "bins": 40},
        },
        base_dir=tmp_path,
    )

    table = tomllib.loads(dumps_toml(config.to_dict()))

    assert table == config.to_dict()


def test_config_overrides_validated(tmp_path: Path) -> None:
    config = parse_config({"data": {"paths": ["/a.root"]}, "model": {"family": "gan"}}, base_dir=tmp_path)

    assert config.with_overrides(epochs=7, device="cpu").training.epochs == 7
    with pytest.raises(ConfigError, match="--epochs 0 is invalid"):
        config.with_overrides(epochs=0)
    with pytest.raises(ConfigError, match="--device 'tpu' is invalid"):
        config.with_overrides(device="tpu")


def test_config_rejects_single_object_mass(tmp_path: Path) -> None:
    table = {
        "data": {"paths": ["/a.root"], "feature_set": "leading-objects", "options": {"collection": "photons", "n": 1}},
        "model": {"family": "vae"},
    }

    with pytest.raises(ConfigError) as caught:
        parse_config(table, base_dir=tmp_path)

    assert caught.value.message.startswith("data.options.n = 1 is invalid: the w1_mass metric")
    assert "Use n >= 2" in caught.value.message


def test_config_rejects_fields_without_angles(tmp_path: Path) -> None:
    options = {"collection": "jets", "n": 2, "fields": ["pt", "mass"]}
    table = {"data": {"paths": ["/a.root"], "feature_set": "leading-objects", "options": options}, "model": {"family": "vae"}}

    with pytest.raises(ConfigError) as caught:
        parse_config(table, base_dir=tmp_path)

    assert caught.value.message.startswith("data.options.fields = ['pt', 'mass'] is invalid")
    assert caught.value.message.endswith("Include pt, eta and phi.")


@pytest.mark.parametrize(
    ("content", "kind"),
    [(b"root\x00\x00\xf4\x43\x00\x00\x00\x64", "(it looks like a ROOT file)"), (b"PAR1\x15\x04\xff\xfe", "(it looks like a Parquet file)")],
)
def test_config_binary_file_rejected(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "events.root"
    path.write_bytes(content)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert f"config file {path} is not a TOML text file {kind}" in caught.value.message
    assert "the data with --data" in caught.value.message
    assert caught.value.exit_code == 5


def test_config_layout_file_resolved(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\npaths = ["e.csv"]\nlayout_file = "layouts/mine.toml"\n[model]\nfamily = "flow"\n', encoding="utf-8")

    config = load_config(path)

    assert config.data.layout_files == (str(tmp_path / "layouts" / "mine.toml"),)
    assert config.to_dict()["data"]["layout_file"] == [str(tmp_path / "layouts" / "mine.toml")]


@pytest.mark.parametrize("name", ["gan_zmumu_2010", "vae_zmumu_2011", "flow_doublemu_2012"])
def test_sample_config_loads(shared_data: Path, name: str) -> None:
    # The sample configs give data paths relative to themselves, which point at the checkout's
    # default data folder.
    path = Path(__file__).resolve().parents[1] / "sample_configs" / f"{name}.toml"

    config = load_config(path)

    assert config.model.family == name.split("_")[0]
    for data_path in config.data.paths:
        assert Path(data_path).is_file(), data_path


# ---------------------------------------------------------------------- splits


def test_splits_fixed_by_seed() -> None:
    values = np.arange(1000, dtype=np.float64).reshape(500, 2)

    first = make_splits(values, ("a", "b"), val_fraction=0.1, test_fraction=0.2, seed=4)
    again = make_splits(values, ("a", "b"), val_fraction=0.1, test_fraction=0.2, seed=4)
    other = make_splits(values, ("a", "b"), val_fraction=0.1, test_fraction=0.2, seed=5)

    assert (len(first.train), len(first.val), len(first.test)) == (350, 50, 100)
    assert np.array_equal(first.test_index, again.test_index)
    assert not np.array_equal(first.test_index, other.test_index)
    everything = np.concatenate([first.train_index, first.val_index, first.test_index])
    assert np.array_equal(np.sort(everything), np.arange(500))
    assert np.array_equal(first.val, values[first.val_index])


def test_splits_too_few_events() -> None:
    with pytest.raises(NoEventsError, match="only 2 events"):
        make_splits(np.zeros((2, 3)), ("a", "b", "c"), val_fraction=0.4, test_fraction=0.4, seed=0)


def test_empty_selection_names_every_cut(cms_data: Path) -> None:
    # The 2015 ttbar NanoAOD file has no event with two muons of opposite charge.
    with pytest.raises(NoEventsError) as caught:
        load_features([cms_data / "nanoAOD_2015_CMS_Open_Data_ttbar.root"], "dimuon", options={"opposite_charge": True})

    assert "(2 muons with finite pt, eta, phi, the two leading of opposite charge)" in caught.value.message


# ---------------------------------------------------------------------- real runs


CSV_2011 = "Zmumu_Run2011A.csv"
RNTUPLE_2012 = "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
FAMILY_DATA = {
    "gan": (CSV_2011, {"batch_size": 256, "lr": 5e-4}),
    "vae": (CSV_2011, {"batch_size": 256}),
    "flow": (RNTUPLE_2012, {"batch_size": 64}),
}
SHORT_RUN_STEPS = 150


@pytest.mark.parametrize("family", ["gan", "vae", "flow"])
def test_short_run_learns_and_writes_run(tmp_path: Path, cms_data: Path, family: str) -> None:
    file_name, training = FAMILY_DATA[family]
    training = {**training, "epochs": -(-SHORT_RUN_STEPS // steps_per_epoch(cms_data / file_name, training["batch_size"]))}
    config = load_config(write_config(tmp_path, cms_data / file_name, family, device="cpu", **training))
    updates: list[Progress] = []

    result = start_run(config, runs_dir=tmp_path / "runs", name=family, callback=updates.append).run()

    run = result.run
    assert result.state == "finished"
    assert run.path == tmp_path / "runs" / family
    for name in ("config.toml", "metrics.jsonl", "status.json", "preprocessing.json", "data.npz"):
        assert (run.path / name).is_file(), name
    assert [u.kind for u in updates if u.kind != "load"][0] == "start"
    loads = [u.record["fraction"] for u in updates if u.kind == "load"]
    assert loads[-1] == 1.0
    assert [u.kind for u in updates][-1] == "end"

    status = run.status()
    assert status["state"] == "finished"
    assert status["pid"] == os.getpid()
    assert status["model"] == family
    assert status["feature_set"] == "dimuon"
    assert status["step"] == result.step
    assert status["total_steps"] == result.step
    assert status["epoch"] == training["epochs"]
    assert status["total_epochs"] == training["epochs"]
    assert status["progress"] == 1.0
    assert status["best_metric"] == min(r["w1_mass"] for r in run.metrics() if "w1_mass" in r)

    records = run.metrics()
    assert result.step >= SHORT_RUN_STEPS
    assert all({"step", "epoch", "time", "loss", "lr", "events_per_second", "grad_norm"} <= set(r) for r in records)
    epoch_records = [r for r in records if "w1_mass" in r]
    assert len(epoch_records) == training["epochs"]
    assert all(r["w1_mass"] > 0 for r in epoch_records)
    losses = loss_series(run)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses

    config_table = run.config()
    assert config_table["model"]["family"] == family
    assert config_table["model"]["grad_clip"] == 10.0  # the model's defaults are written out
    assert config_table["training"]["epochs"] == training["epochs"]

    for checkpoint_name in ("last", "best"):
        state = torch.load(run.checkpoint_path(checkpoint_name), weights_only=True)
        assert state["family"] == family
    assert torch.load(run.checkpoint_path("last"), weights_only=True)["step"] == result.step
    assert torch.load(run.checkpoint_path("best"), weights_only=True)["step"] == status["best_step"]


@pytest.fixture(scope="module")
def finished_flow_run(tmp_path_factory: pytest.TempPathFactory, cms_data: Path) -> RunDirectory:
    folder = tmp_path_factory.mktemp("flow")
    config = load_config(write_config(folder, cms_data / RNTUPLE_2012, "flow", epochs=3, device="cpu"))
    return start_run(config, runs_dir=folder / "runs", name="flow").run().run


def test_run_data_splits(finished_flow_run: RunDirectory) -> None:
    run = finished_flow_run

    with np.load(run.data_path) as data:
        assert set(data.files) >= {"train", "val", "test", "columns", "train_index", "val_index", "test_index"}
        assert len(np.intersect1d(data["train_index"], data["test_index"])) == 0
    test = run.load_split("test")
    assert test.dtype == np.float64
    assert test.shape[1] == 7
    assert run.columns() == ("mu1_pt", "mu1_eta", "mu1_phi", "mu2_pt", "mu2_eta", "mu2_phi", "charge_product")


def test_run_sample_physical_units(finished_flow_run: RunDirectory) -> None:
    run = finished_flow_run

    events = run.sample(2000, seed=3)
    again = run.sample(2000, seed=3, checkpoint="best")
    last = run.sample(50, seed=3, checkpoint="last")

    assert events.shape == (2000, 7)
    assert np.array_equal(events, again)
    assert last.shape == (50, 7)
    columns = run.columns()
    for name in ("mu1_pt", "mu2_pt"):
        assert (events[:, columns.index(name)] > 0).all()
    for name in ("mu1_phi", "mu2_phi"):
        assert (np.abs(events[:, columns.index(name)]) <= math.pi).all()
    assert set(np.unique(events[:, columns.index("charge_product")])) <= {-1.0, 1.0}
    assert run.feature_set().columns == columns


def test_list_runs_finds_run(finished_flow_run: RunDirectory) -> None:
    runs = list_runs(finished_flow_run.path.parent)

    assert [r.name for r in runs] == ["flow"]
    assert list_runs(finished_flow_run.path.parent / "absent") == []


# ---------------------------------------------------------------------- resume


@pytest.mark.parametrize(("family", "stop_step"), [("gan", 10), ("vae", 10), ("gan", 7)])
def test_resume_equals_uninterrupted(tmp_path: Path, cms_data: Path, family: str, stop_step: int) -> None:
    # The stop step must fall inside the first epoch, so the resume has to redraw that epoch's
    # permutation and skip its first batches. Step 7 is not a multiple of the GAN's n_critic (5),
    # so the resume starts between two generator updates.
    assert steps_per_epoch(cms_data / CSV_2011, 256) > stop_step
    # Log every step, so that the callback receives the stop step.
    config_path = write_config(
        tmp_path, cms_data / CSV_2011, family, epochs=2, batch_size=256, scheduler="cosine", device="cpu", log_every=1
    )
    config = load_config(config_path)
    runs_dir = tmp_path / "runs"

    whole = start_run(config, runs_dir=runs_dir, name="whole").run()

    interrupted = start_run(config, runs_dir=runs_dir, name="parts")

    def stop_at_step(update: Progress) -> None:
        if update.kind == "step" and update.record["step"] == stop_step:
            interrupted.request_stop("test stop")

    interrupted.callback = stop_at_step
    first_part = interrupted.run()
    assert first_part.state == "stopped"
    assert first_part.step == stop_step
    assert interrupted.run_dir.status()["state"] == "stopped"

    second_part = resume_run(interrupted.run_dir.path).run()

    assert second_part.state == "finished"
    assert second_part.step == whole.step
    whole_records = whole.run.metrics()
    parts_records = second_part.run.metrics()
    assert [r["step"] for r in parts_records] == [r["step"] for r in whole_records]
    loss_keys = [k for k in whole_records[0] if k not in ("time", "events_per_second")]
    for expected, actual in zip(whole_records, parts_records, strict=True):
        assert {k: actual[k] for k in loss_keys} == {k: expected[k] for k in loss_keys}
    assert second_part.best_metric == whole.best_metric

    whole_state = torch.load(whole.run.checkpoint_path("last"), weights_only=True)
    parts_state = torch.load(second_part.run.checkpoint_path("last"), weights_only=True)
    assert whole_state["model"].keys() == parts_state["model"].keys()
    for name, tensor in whole_state["model"].items():
        assert torch.equal(tensor, parts_state["model"][name]), name


def test_resume_finished_run_needs_more_epochs(finished_flow_run: RunDirectory) -> None:
    with pytest.raises(ConfigError, match="already trained 3 epochs"):
        resume_run(finished_flow_run.path).run()

    assert finished_flow_run.status()["state"] == "finished"


def test_resume_more_epochs_replans_cosine(tmp_path: Path, cms_data: Path) -> None:
    config = load_config(
        write_config(tmp_path, cms_data / CSV_2011, "vae", epochs=2, batch_size=256, scheduler="cosine", device="cpu", log_every=1)
    )
    first = start_run(config, runs_dir=tmp_path / "runs", name="cosine").run()
    finished_state = torch.load(first.run.checkpoint_path("last"), weights_only=True)
    end_step = first.step

    resumed = resume_run(first.run.path, epochs=4).run()

    later = [record for record in resumed.run.metrics() if "lr" in record and record["step"] > end_step]
    total = resumed.step
    assert total == 2 * end_step
    assert later
    for record in later:
        # The rate follows the cosine curve over the four epochs, not the finished curve's 0.
        expected = 1e-3 * (1 + math.cos(math.pi * record["step"] / total)) / 2
        assert record["lr"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert later[0]["lr"] > 0.4e-3
    resumed_state = torch.load(resumed.run.checkpoint_path("last"), weights_only=True)
    changed = [name for name, tensor in finished_state["model"].items() if not torch.equal(tensor, resumed_state["model"][name])]
    assert changed


# ---------------------------------------------------------------------- failures


def test_nonfinite_loss_fails_and_keeps_checkpoint(
    tmp_path: Path, cms_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write_config(tmp_path, cms_data / CSV_2011, "vae", epochs=3, batch_size=256, device="cpu"))
    epoch_steps = steps_per_epoch(cms_data / CSV_2011, 256)
    planted_step = epoch_steps + 2  # inside the second epoch
    trainer = start_run(config, runs_dir=tmp_path / "runs", name="nan")
    original_loop = Trainer._loop

    def planted_loop(self: Trainer) -> Any:
        real_step = self.model.training_step

        def step_with_nan(batch: torch.Tensor, step: int) -> dict[str, float]:
            losses = real_step(batch, step)
            if step == planted_step:  # the weights are poisoned as well as the loss
                with torch.no_grad():
                    for parameter in self.model.parameters():
                        parameter.fill_(float("nan"))
                losses["kl"] = float("nan")
            return losses

        self.model.training_step = step_with_nan
        return original_loop(self)

    monkeypatch.setattr(Trainer, "_loop", planted_loop)

    with pytest.raises(RunFailedError) as caught:
        trainer.run()

    assert caught.value.exit_code == 6
    # Steps count from 1 in messages and metrics, while training_step gets the 0-based index.
    assert f"kl = nan at step {planted_step + 1}" in caught.value.message
    status = trainer.run_dir.status()
    assert status["state"] == "failed"
    assert f"step {planted_step + 1}" in status["message"]
    last = torch.load(trainer.run_dir.checkpoint_path("last"), weights_only=True)
    assert last["step"] == epoch_steps  # the end of the first epoch
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_nan_events_dropped_before_training(
    tmp_path: Path, cms_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cmsgen.engine.features as features

    real_load = features.load_features

    def load_with_nan(*args: Any, **kwargs: Any) -> Any:
        table = real_load(*args, **kwargs)
        table.values[[3, 30, 300], 1] = np.nan
        return table

    monkeypatch.setattr(features, "load_features", load_with_nan)
    config = load_config(write_config(tmp_path, cms_data / "uproot-Zmumu.root", "flow", epochs=1, device="cpu"))

    result = start_run(config, runs_dir=tmp_path / "runs", name="nan-data").run()

    assert result.state == "finished"
    with np.load(result.run.data_path) as data:
        total = sum(len(data[name]) for name in ("train", "val", "test"))
        assert np.isfinite(data["train"]).all()
    assert total == len(real_load([cms_data / "uproot-Zmumu.root"], "dimuon").values) - 3


def test_unwritable_runs_dir(tmp_path: Path, cms_data: Path) -> None:
    config = load_config(write_config(tmp_path, cms_data / "uproot-Zmumu.root", "flow"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        start_run(config, runs_dir=blocker / "runs", name="x")

    assert str(blocker / "runs") in caught.value.message


def test_missing_data_leaves_no_run(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tmp_path / "nowhere" / "events.root", "flow"))

    with pytest.raises(DataNotFoundError):
        start_run(config, runs_dir=tmp_path / "runs", name="x")

    assert not (tmp_path / "runs" / "x").exists()


def test_unknown_layout_leaves_no_run(tmp_path: Path, shared_data: Path) -> None:
    config = load_config(write_config(tmp_path, shared_data / "legacy" / "uproot-issue64.root", "flow"))

    with pytest.raises(UnreadableFileError, match="No known layout matches"):
        start_run(config, runs_dir=tmp_path / "runs", name="x")

    assert not (tmp_path / "runs" / "x").exists()


def test_empty_tree_leaves_no_run(tmp_path: Path, shared_data: Path) -> None:
    config = load_config(write_config(tmp_path, shared_data / "legacy" / "uproot-issue335.root", "flow"))

    with pytest.raises(NoEventsError, match="has 0 entries"):
        start_run(config, runs_dir=tmp_path / "runs", name="x")

    assert not (tmp_path / "runs" / "x").exists()


def test_non_root_file_leaves_no_run(tmp_path: Path) -> None:
    not_root = tmp_path / "events.root"
    not_root.write_text("not a ROOT file\n", encoding="utf-8")
    config = load_config(write_config(tmp_path, not_root, "flow"))

    with pytest.raises(UnreadableFileError):
        start_run(config, runs_dir=tmp_path / "runs", name="x")

    assert not (tmp_path / "runs" / "x").exists()


def test_existing_run_name_rejected(finished_flow_run: RunDirectory) -> None:
    config = parse_config(finished_flow_run.config(), base_dir=finished_flow_run.path)

    with pytest.raises(ConfigError, match="already exists"):
        start_run(config, runs_dir=finished_flow_run.path.parent, name="flow")


class FullDiskFile(io.FileIO):
    """A real file that accepts ``budget`` bytes, then writes part of the next block and raises ENOSPC, as a full disk does."""

    def __init__(self, path: Any, mode: str, budget: int) -> None:
        super().__init__(path, mode.replace("b", ""))
        self.budget = budget

    def write(self, data: Any) -> int:
        size = len(memoryview(data).cast("B"))
        if size > self.budget:
            super().write(memoryview(data).cast("B")[: self.budget])
            self.budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= size
        return super().write(data)


def test_full_disk_keeps_last_checkpoint(tmp_path: Path, cms_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write_config(tmp_path, cms_data / "uproot-Zmumu.root", "flow", epochs=3, device="cpu"))
    opened: list[Path] = []

    def open_until_full(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(path))
        if len(opened) > 3:  # step 0, then last and best of the first epoch
            return FullDiskFile(path, mode, budget=1000)
        return open(path, mode, *args, **kwargs)

    # torch.save itself raises RuntimeError ("unexpected pos") when its file's write fails.
    monkeypatch.setattr(checkpoint_module, "open", open_until_full, raising=False)

    with pytest.raises(RunFailedError) as caught:
        start_run(config, runs_dir=tmp_path / "runs", name="full").run()

    run = RunDirectory(tmp_path / "runs" / "full")
    message = caught.value.message
    assert message.startswith(f"could not write checkpoint {run.checkpoint_path('last')}: No space left on device.")
    assert "Free disk space" in message
    assert caught.value.exit_code == 6
    assert run.status()["state"] == "failed"
    assert run.status()["message"] == message
    assert torch.load(run.checkpoint_path("last"), weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["best.pt", "last.pt"]


def test_full_filesystem_keeps_last_checkpoint(tmp_path: Path, cms_data: Path) -> None:
    """A real full disk: a small tmpfs that is filled after the first epoch. Needs root and mount."""
    import subprocess

    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        config = load_config(
            write_config(tmp_path, cms_data / "uproot-Zmumu.root", "flow", epochs=3, device="cpu", log_every=1000)
        )

        def fill_after_first_epoch(progress: Progress) -> None:
            if progress.kind != "epoch" or progress.record["epoch"] != 1:
                return
            filler = mount_point / "filler"
            with open(filler, "wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
                except OSError as error:
                    assert error.errno == errno.ENOSPC
            # Leave room for status.json, but not for a checkpoint.
            os.truncate(filler, filler.stat().st_size - 8192)

        with pytest.raises(RunFailedError) as caught:
            start_run(config, runs_dir=mount_point, name="full", callback=fill_after_first_epoch).run()

        run = RunDirectory(mount_point / "full")
        assert f"could not write checkpoint {run.checkpoint_path('last')}: No space left on device" in caught.value.message
        assert run.status()["state"] == "failed"
        assert torch.load(run.checkpoint_path("last"), weights_only=True)["epoch"] == 1
        assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["best.pt", "last.pt"]
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


# ---------------------------------------------------------------------- status robustness


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "status.json is missing"),
        ('{"state": "runn', "cannot be read"),
        ("[1, 2]", "cannot be read"),
    ],
)
def test_status_unreadable_is_unknown(tmp_path: Path, content: str | None, reason: str) -> None:
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    if content is not None:
        (tmp_path / "status.json").write_text(content, encoding="utf-8")

    status = RunDirectory(tmp_path).status()

    assert status["state"] == "unknown"
    assert reason in status["message"]
    assert status["name"] == tmp_path.name


def test_status_dead_process_is_unknown(tmp_path: Path) -> None:
    dead_pid = 2**22 + 12345  # above 2**22, the highest pid_max that 64-bit Linux allows, so no process has it
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "pid": dead_pid}), encoding="utf-8")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo', encoding="utf-8")

    run = RunDirectory(tmp_path)

    assert run.status()["state"] == "unknown"
    assert "no longer running" in run.status()["message"]
    assert run.metrics() == [{"step": 1, "loss": 2.0}]


def test_named_run_directory_reused_before_start(tmp_path: Path, cms_data: Path) -> None:
    config = load_config(write_config(tmp_path, cms_data / CSV_2011, "vae", epochs=1, device="cpu"))
    prepared = tmp_path / "runs" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "train-process.log").write_text("launcher output\n")

    run = create_run_directory(tmp_path / "runs", "prepared", config)

    assert run.path == prepared
    assert (prepared / "checkpoints").is_dir()
    assert (prepared / "train-process.log").read_text() == "launcher output\n"
    (prepared / "status.json").write_text("{}")
    with pytest.raises(ConfigError, match="already exists"):
        create_run_directory(tmp_path / "runs", "prepared", config)


def test_failing_progress_display_keeps_run(tmp_path: Path, cms_data: Path) -> None:
    config = load_config(write_config(tmp_path, cms_data / "uproot-Zmumu.root", "flow", device="cpu"))
    calls = []

    def closed_stdout(progress: Progress) -> None:
        calls.append(progress.kind)
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    result = start_run(config, runs_dir=tmp_path / "runs", name="piped", callback=closed_stdout).run()

    assert result.state == "finished"
    assert RunDirectory(tmp_path / "runs" / "piped").status()["state"] == "finished"
    assert len(calls) == 1


def test_interrupt_before_training_not_resumable(tmp_path: Path, cms_data: Path) -> None:
    from cmsgen.tui.commands.train import resolve_run_path

    config = load_config(write_config(tmp_path, cms_data / "uproot-Zmumu.root", "flow", device="cpu"))

    def interrupt_while_reading(progress: Progress) -> None:
        if progress.kind == "load":
            raise KeyboardInterrupt

    trainer = start_run(config, runs_dir=tmp_path / "runs", name="early", callback=interrupt_while_reading)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()

    run = RunDirectory(tmp_path / "runs" / "early")
    status = run.status()
    assert status["state"] == "failed"
    assert status["message"] == trainer.interrupt_message
    assert trainer.interrupt_message.startswith("interrupted before training started, so the run has no checkpoint")
    with pytest.raises(ConfigError) as caught:
        resolve_run_path("early", tmp_path / "runs")
    assert "has no checkpoint, because it ended before training started (state failed)" in caught.value.message
    assert caught.value.exit_code == 5
