"""Measure how many events per second each model family generates on this machine.

For every family built with its default hyperparameters, the script times ``model.sample(n)``
(preprocessed space) and, when the real 2011 dimuon CSV is found, also the inverse
preprocessing to physical units. It prints events per second and the ratio to the target
(the aim) of one million events per second on CPU, which applies to the GAN and the VAE.

Usage:
    python benchmarks/generation_speed.py [--n 1000000] [--repeats 3] [--threads 0] [--device cpu]
                                         [--families gan,vae,flow]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cmsgen.engine.features.preprocessing import Preprocessing
from cmsgen.engine.models import MODEL_FAMILIES, build_model

AIM_EVENTS_PER_SECOND = 1_000_000
FAMILIES_WITH_AIM = ("gan", "vae")
DIMUON_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cms" / "Zmumu_Run2011A.csv"


def fit_dimuon_preprocessing() -> Preprocessing | None:
    """Fit the preprocessing on the 2011 dimuon CSV, or return None when the file is absent."""
    if not DIMUON_CSV.is_file():
        return None
    from cmsgen.engine.features import load_features

    table = load_features([DIMUON_CSV], "dimuon")
    return Preprocessing.fit(table.values, table.columns, table.kinds, table.feature_set.discrete_values)


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Return the shortest wall-clock time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="events generated per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per family (the fastest counts)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads, or 0 for torch's default")
    parser.add_argument("--device", default="cpu", help="torch device of the models, for example cpu or cuda")
    parser.add_argument(
        "--families", default=",".join(MODEL_FAMILIES), help="comma-separated model families to time, for example gan,vae"
    )
    arguments = parser.parse_args()
    if arguments.threads > 0:
        torch.set_num_threads(arguments.threads)

    pipe = fit_dimuon_preprocessing()
    dim = pipe.output_dim if pipe is not None else 6
    print(f"device {arguments.device}, {torch.get_num_threads()} threads, n = {arguments.n:,}, dim = {dim}")
    if pipe is None:
        print(f"{DIMUON_CSV} not found: timing model.sample only")

    header = f"{'family':<6} {'sample ev/s':>14} {'ratio to aim':>13} {'+ inverse ev/s':>15} {'ratio to aim':>13}"
    print(header, flush=True)
    for family in arguments.families.split(","):
        torch.manual_seed(0)
        model = build_model(family, dim).to(arguments.device)
        generator = torch.Generator(device=arguments.device).manual_seed(0)
        model.sample(1_000, generator)  # Warm up allocations and lazy initialisation before timing.

        # The flow inverts spline transforms and is far slower, so one call is enough for it.
        repeats = arguments.repeats if family in FAMILIES_WITH_AIM else 1
        seconds = best_time(lambda: model.sample(arguments.n, generator), repeats)
        rate = arguments.n / seconds
        line = f"{family:<6} {rate:>14,.0f} {rate / AIM_EVENTS_PER_SECOND:>13.2f}"

        if pipe is not None:
            rng = np.random.default_rng(0)
            full_seconds = best_time(lambda: pipe.inverse(model.sample(arguments.n, generator).cpu().numpy(), rng), repeats)
            full_rate = arguments.n / full_seconds
            line += f" {full_rate:>15,.0f} {full_rate / AIM_EVENTS_PER_SECOND:>13.2f}"
        if family not in FAMILIES_WITH_AIM:
            line += "   (no speed aim)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
