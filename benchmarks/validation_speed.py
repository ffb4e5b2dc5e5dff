"""Time the full validation report on 1e6 real versus 1e6 generated dimuon events.

Both samples, and a training sample for the memorisation check, are drawn
from the toy Z -> mu mu model of
``cmsgen.engine.validation.physics.toy_dimuon_events``. The generated sample
has a mass shifted by about 0.5 GeV (91.7 instead of 91.1876 GeV). The script
prints the seconds per stage and the total. The aim is under 60 s on two
CPU cores. FPD, KPD, the classifier and the memorisation check work on
subsamples by design (50,000, 10 x 5,000, 20,000 and 20,000 events per side
at the defaults), while the univariate figures use every event. JetNet is not
a dependency, so the script prints no comparison with JetNet's FPD and KPD.

Run: python benchmarks/validation_speed.py [--events N]
"""

from __future__ import annotations

import argparse
import time

from cmsgen.engine.features import get_feature_set
from cmsgen.engine.validation import validate_arrays
from cmsgen.engine.validation.physics import toy_dimuon_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="number of events per sample (default 1e6)")
    args = parser.parse_args()

    start = time.perf_counter()
    real = toy_dimuon_events(args.events, seed=1)
    generated = toy_dimuon_events(args.events, seed=2, mass=91.7)
    train = toy_dimuon_events(args.events, seed=3)
    print(f"drew 3 x {args.events:,} toy events in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    report = validate_arrays(real, generated, get_feature_set("dimuon"), train=train, seed=0)
    total = time.perf_counter() - start

    for stage, seconds in sorted(report.timings.items(), key=lambda item: -item[1]):
        print(f"{stage:40s} {seconds:8.2f} s")
    print(f"{'total':40s} {total:8.2f} s  (aim: < 60 s)")
    print(f"summary: {report.summary()}")


if __name__ == "__main__":
    main()
