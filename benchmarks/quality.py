"""Generation quality of each model family on the CMS 2011 Run A Z->mumu events.

Each family trains on the dimuon features of ``Zmumu_Run2011A.csv`` with its sample-config
settings for at most ``--minutes`` of wall-clock time (default 10), through the real
trainer. Its best checkpoint then generates as many events as the test split contains, and
the script prints a table of

- the Z peak position: the location of a Cauchy (non-relativistic Breit-Wigner) fitted by
  maximum likelihood to the dimuon masses in 81-101 GeV, generated and real;
- W1 of the dimuon mass between generated events and the test split, against 3x the
  real-versus-real baseline (W1 between the two halves of the test split).

Usage:
    python benchmarks/quality.py [--minutes 10] [--families gan vae flow] [--device auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data" / "cms" / "Zmumu_Run2011A.csv"
SAMPLE_CONFIGS = {
    "gan": REPO_ROOT / "sample_configs" / "gan_zmumu_2010.toml",
    "vae": REPO_ROOT / "sample_configs" / "vae_zmumu_2011.toml",
    "flow": REPO_ROOT / "sample_configs" / "flow_doublemu_2012.toml",
}
PEAK_WINDOW = (81.0, 101.0)  # GeV, around the Z mass of 91.19 GeV


def z_peak(mass: np.ndarray) -> float:
    """Return the fitted Cauchy location (GeV) of the masses inside PEAK_WINDOW."""
    import scipy.stats

    inside = mass[(mass > PEAK_WINDOW[0]) & (mass < PEAK_WINDOW[1])]
    if len(inside) < 10:
        return float("nan")
    location, _ = scipy.stats.cauchy.fit(inside)
    return float(location)


def train_family(family: str, minutes: float, device: str, workdir: Path) -> tuple[object, int, float]:
    """Train one family on DATA until ``minutes`` have passed and return (run, steps, seconds).

    The family's sample config gives the model and batch size, with DATA as its data. The
    cosine schedule is turned off because time, not an epoch count, sets the run length.
    """
    from cmsgen.engine.training.config import parse_config
    from cmsgen.engine.training.trainer import Progress, start_run

    table = tomllib.loads(SAMPLE_CONFIGS[family].read_text(encoding="utf-8"))
    table["data"]["paths"] = [str(DATA)]
    table["training"].update({"epochs": 100_000, "device": device, "scheduler": "none"})
    trainer = start_run(parse_config(table, base_dir=workdir), runs_dir=workdir / "runs", name=family)
    deadline = time.monotonic() + 60 * minutes

    def stop_at_deadline(update: Progress) -> None:
        if time.monotonic() > deadline:
            trainer.request_stop("time limit")

    trainer.callback = stop_at_deadline
    start = time.monotonic()
    result = trainer.run()
    return result.run, result.step, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per family (wall clock)")
    parser.add_argument("--families", nargs="+", default=["gan", "vae", "flow"], choices=("gan", "vae", "flow"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated sample")
    args = parser.parse_args()

    import scipy.stats

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for family in args.families:
            run, steps, seconds = train_family(family, args.minutes, args.device, Path(folder))
            feature_set = run.feature_set()
            test = run.load_split("test")
            real_mass = feature_set.observables(test)["mass"]
            generated_mass = feature_set.observables(run.sample(len(test), seed=args.seed))["mass"]
            half = len(real_mass) // 2
            order = np.random.default_rng(args.seed).permutation(len(real_mass))
            baseline = scipy.stats.wasserstein_distance(real_mass[order[:half]], real_mass[order[half:]])
            w1 = scipy.stats.wasserstein_distance(generated_mass, real_mass)
            rows.append((family, steps, seconds, len(test), z_peak(generated_mass), z_peak(real_mass), w1, baseline))

    print(f"data: {DATA.name}. The best checkpoint of each run generates as many events as its test split.")
    print(
        f"{'family':6} {'steps':>7} {'minutes':>7} {'test':>6} {'peak gen':>9} {'peak real':>9} "
        f"{'W1 mass':>8} {'3x base':>8}  W1 <= 3x base"
    )
    for family, steps, seconds, n_test, peak_generated, peak_real, w1, baseline in rows:
        print(
            f"{family:6} {steps:7d} {seconds / 60:7.1f} {n_test:6d} {peak_generated:9.2f} {peak_real:9.2f} "
            f"{w1:8.3f} {3 * baseline:8.3f}  {'yes' if w1 <= 3 * baseline else 'no'}"
        )
    print("Peaks and W1 are in GeV. The test split follows the fractions of each sample config.")


if __name__ == "__main__":
    main()
