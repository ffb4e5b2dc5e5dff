"""Training throughput of the trainer's loop against the bound and a DataLoader loop.

On the real dimuon features of ``Zmumu_Run2011A.csv`` (CMS 2011 Run A), with the same
model family, network and batch size, in one process:

  (a) ``Trainer.run()``: batches cut on the device from on-device permutations. It gives two
      numbers. The loop's own rate is the ``events_per_second`` of its logged steps, which
      leaves out the once-per-epoch metric and checkpoints. The whole-run rate is measured by
      wall clock over the whole run;
  (b) the upper bound: ``training_step`` on one pre-cut batch, without any data handling;
  (c) a plain ``DataLoader(TensorDataset(x), shuffle=True)`` loop over the same tensor.

It prints events/s and the ratios a/b (aim >= 0.9) and a/c (aim >= 1.2).

The three variants alternate over ``--rounds`` rounds and the medians are compared.

Usage:
    python benchmarks/training_throughput.py [--family gan] [--steps 400] [--batch-size 256]
        [--device auto] [--data PATH] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cms" / "Zmumu_Run2011A.csv"


def synchronize(device: object) -> None:
    import torch

    if getattr(device, "type", "") == "cuda":
        torch.cuda.synchronize()


def throughput_config(data: Path, family: str, steps: int, batch_size: int, device: str) -> dict[str, object]:
    """Return a config table that trains about ``steps`` steps with the family's default network."""
    from cmsgen.engine.features import load_features
    from cmsgen.engine.training.config import TrainingConfig
    from cmsgen.engine.training.splits import make_splits

    # The same split as the trainer's, to know how many steps one epoch has.
    table = load_features([data], "dimuon")
    defaults = TrainingConfig()
    n_train = len(
        make_splits(
            table.values, table.columns, val_fraction=defaults.val_fraction, test_fraction=defaults.test_fraction, seed=0
        ).train
    )
    steps_per_epoch = max(1, n_train // min(batch_size, n_train))
    return {
        "data": {"paths": [str(data)], "feature_set": "dimuon"},
        "model": {"family": family},
        "training": {
            "epochs": max(1, -(-steps // steps_per_epoch)),
            "batch_size": batch_size,
            "device": device,
            "log_every": 10,
            "metric_events": 1000,
        },
    }


def loop_rate(metrics: list[dict[str, object]], batch_size: int) -> float:
    """Return the loop's events per second from the logged steps, leaving out the epoch-end lines.

    Lines without ``w1_mass`` measure the loop alone, and each is weighted by the steps it covers.
    """
    steps, seconds, previous_step = 0, 0.0, 0
    for record in metrics:
        step = int(record["step"])  # type: ignore[call-overload]
        covered, previous_step = step - previous_step, step
        rate = record.get("events_per_second")
        if "w1_mass" in record or not isinstance(rate, (int, float)) or rate <= 0:
            continue
        steps += covered
        seconds += covered * batch_size / rate
    return steps * batch_size / seconds


def trainer_rate(data: Path, family: str, steps: int, batch_size: int, device: str, workdir: Path) -> tuple[float, float, int]:
    """Return (loop events/s, whole-run events/s, batch size used) of ``Trainer.run``."""
    from cmsgen.engine.training.config import parse_config
    from cmsgen.engine.training.trainer import start_run

    table = throughput_config(data, family, steps, batch_size, device)
    trainer = start_run(parse_config(table, base_dir=workdir), runs_dir=workdir / "runs", name="timed")
    start = time.perf_counter()
    result = trainer.run()
    elapsed = time.perf_counter() - start
    whole_rate = result.step * trainer.batch_size / elapsed
    return loop_rate(trainer.run_dir.metrics(), trainer.batch_size), whole_rate, trainer.batch_size


def prepared_tensor(data: Path, device: object) -> object:
    import numpy as np
    import torch

    from cmsgen.engine.features import load_features
    from cmsgen.engine.features.preprocessing import Preprocessing

    table = load_features([data], "dimuon")
    pipe = Preprocessing.fit(table.values, table.columns, table.kinds, table.feature_set.discrete_values, seed=0)
    return torch.as_tensor(pipe.transform(table.values, np.random.default_rng(0))).to(device)


def new_model(family: str, dim: int, device: object) -> object:
    from cmsgen.engine.models import build_model

    model = build_model(family, dim).to(device)
    model.configure_optimizers(1e-3, 0.0)
    return model


def bound_rate(x: object, family: str, steps: int, batch_size: int, device: object) -> float:
    batch = x[:batch_size].contiguous()
    model = new_model(family, x.shape[1], device)
    for step in range(5):  # warm-up
        model.training_step(batch, step)
    synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        model.training_step(batch, step)
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def dataloader_rate(x: object, family: str, steps: int, batch_size: int, device: object) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    model = new_model(family, x.shape[1], device)
    loader = DataLoader(TensorDataset(x.cpu()), batch_size=batch_size, shuffle=True, drop_last=True)
    warm_up = x[:batch_size].contiguous()
    for step in range(5):
        model.training_step(warm_up, step)
    done = 0
    synchronize(device)
    start = time.perf_counter()
    while done < steps:
        for (batch,) in loader:
            model.training_step(batch.to(device, non_blocking=True), done)
            done += 1
            if done == steps:
                break
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="gan", choices=("gan", "vae", "flow"))
    parser.add_argument("--steps", type=int, default=400, help="training steps timed per variant")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three variants, whose medians are printed")
    args = parser.parse_args()

    import torch

    from cmsgen.engine.training.trainer import resolve_device

    device = resolve_device(args.device)
    print(f"family {args.family}, batch size {args.batch_size}, {args.steps} steps, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    # The variants alternate over several rounds and the medians are compared, so that a change
    # in machine load during the run affects every variant alike.
    x = prepared_tensor(args.data, device)
    loops, wholes, bounds, loaders = [], [], [], []
    for round_number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as folder:
            loop, whole, batch_size = trainer_rate(
                args.data, args.family, args.steps, args.batch_size, args.device, Path(folder)
            )
        bound = bound_rate(x, args.family, args.steps, batch_size, device)
        loader = dataloader_rate(x, args.family, args.steps, batch_size, device)
        print(f"round {round_number}: a {loop:.0f}, whole run {whole:.0f}, b {bound:.0f}, c {loader:.0f} events/s")
        loops.append(loop)
        wholes.append(whole)
        bounds.append(bound)
        loaders.append(loader)

    loop, whole, bound, loader = (statistics.median(v) for v in (loops, wholes, bounds, loaders))
    print(f"medians over {args.rounds} rounds:")
    print(f"(a) trainer loop          {loop:12.0f} events/s")
    print(f"    trainer, whole run    {whole:12.0f} events/s  (with the per-epoch metric and checkpoints)")
    print(f"(b) bound, one batch      {bound:12.0f} events/s")
    print(f"(c) DataLoader loop       {loader:12.0f} events/s")
    print(f"a/b = {loop / bound:.2f} (aim >= 0.9)   a/c = {loop / loader:.2f} (aim >= 1.2)")
    print(f"whole run / b = {whole / bound:.2f}   whole run / c = {whole / loader:.2f}")


if __name__ == "__main__":
    main()
