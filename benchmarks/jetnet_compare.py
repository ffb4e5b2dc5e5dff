"""Our FPD and KPD against JetNet's, on the same input, in one process.

JetNet (``jetnet.evaluation.fpd`` and ``kpd``) is the reference implementation
of the Frechet and kernel physics distances. It is not a dependency of this
project, because it pulls in coffea, energyflow and numba, and its compiled
``wasserstein`` module needs NumPy 1. To run this script, install it into a
separate environment together with this project:

    python -m venv /tmp/venv-jetnet
    /tmp/venv-jetnet/bin/pip install torch==2.13.0
    /tmp/venv-jetnet/bin/pip install jetnet -e .
    /tmp/venv-jetnet/bin/pip install "numpy<2" "pyarrow<19" "pandas<3"
    /tmp/venv-jetnet/bin/python benchmarks/jetnet_compare.py

Both sides get the same standardised toy dimuon samples, cut to 60-120 GeV
(``normalise=False`` for JetNet), and the same settings: FPD over sizes
20,000 to 50,000 (10 points, 20 batches each), KPD over 10 batches of 5,000.
The script prints each value with its error, the time of each call and the
time ratio ours / JetNet's (aim: at most 1). The two KPD implementations draw
different random batches, so their values agree within errors, not exactly.

Usage:
    python benchmarks/jetnet_compare.py [--events 200000] [--shift 0.5]
"""

from __future__ import annotations

import argparse
import time

from cmsgen.engine.features import get_feature_set
from cmsgen.engine.validation.multivariate import frechet_physics_distance, kernel_physics_distance, standardise
from cmsgen.engine.validation.physics import toy_dimuon_events

Z_MASS = 91.1876


def timed(function, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201 - a timing wrapper
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per sample")
    parser.add_argument("--shift", type=float, default=0.5, help="Z mass shift of the generated sample, GeV")
    args = parser.parse_args()

    try:
        from jetnet.evaluation import fpd, kpd
    except ImportError:
        raise SystemExit("JetNet is not installed in this environment; see the instructions at the top of this script.") from None

    # The toy's Breit-Wigner mass has Cauchy tails up to TeV, whose pt outliers dominate a
    # quartic kernel, so both samples keep the 60-120 GeV window of a Z analysis.
    dimuon = get_feature_set("dimuon")
    samples = []
    for seed, mass in ((1, Z_MASS), (2, Z_MASS + args.shift)):
        events = toy_dimuon_events(args.events, seed=seed, mass=mass)
        pair_mass = dimuon.observables(events)["mass"]
        samples.append(events[(pair_mass > 60.0) & (pair_mass < 120.0)])
    real, generated = samples
    # The six continuous columns only: the charge product is +1 for 1 % of the toy events, and
    # those standardise to about 10, which dominates the quartic kernel and makes KPD's spread huge.
    real, generated = standardise(real[:, :6], generated[:, :6])

    ours_fpd, ours_fpd_seconds = timed(frechet_physics_distance, real, generated, seed=0)
    (jetnet_fpd, jetnet_fpd_error), jetnet_fpd_seconds = timed(fpd, real, generated, normalise=False, seed=0)
    ours_kpd, ours_kpd_seconds = timed(kernel_physics_distance, real, generated, seed=0)
    (jetnet_kpd, jetnet_kpd_error), jetnet_kpd_seconds = timed(kpd, real, generated, normalise=False, seed=0)

    print(f"{len(real):,} and {len(generated):,} events in 60-120 GeV, Z mass shifted by {args.shift} GeV, {real.shape[1]} standardised features")
    print(f"FPD  ours   {ours_fpd.value:.5f} +- {ours_fpd.error or 0.0:.5f}   {ours_fpd_seconds:6.2f} s")
    print(f"FPD  JetNet {jetnet_fpd:.5f} +- {jetnet_fpd_error:.5f}   {jetnet_fpd_seconds:6.2f} s")
    print(f"KPD  ours   {ours_kpd.value:.5f} +- {ours_kpd.error or 0.0:.5f}   {ours_kpd_seconds:6.2f} s")
    print(f"KPD  JetNet {jetnet_kpd:.5f} +- {jetnet_kpd_error:.5f}   {jetnet_kpd_seconds:6.2f} s")
    print(f"time ratio ours / JetNet: FPD {ours_fpd_seconds / jetnet_fpd_seconds:.2f}, KPD {ours_kpd_seconds / jetnet_kpd_seconds:.2f} (aim <= 1)")


if __name__ == "__main__":
    main()
