"""Training throughput with one process and with two data-parallel ranks (``--nproc 2``).

On the real dimuon features of ``Zmumu_Run2011A.csv`` (CMS 2011 Run A), the same config
(family, network, global batch, steps) is trained by ``cmsgen-tui train CONFIG`` and by
``cmsgen-tui train CONFIG --nproc 2``, each a real subprocess. The rate of each is read from
the run's ``metrics.jsonl``: the ``events_per_second`` of the logged steps (global events, rank
0's clock), weighted by the steps each line covers, leaving out the epoch-end lines with the
physics metric and checkpoints. The wall time of the whole command, start-up included, is
printed too.

The two sides alternate over ``--rounds`` rounds and the medians are compared. The script prints
the ratio two ranks / one process.

Usage:
    python benchmarks/training_ddp.py [--family gan] [--steps 300] [--batch-size 256]
        [--device cpu] [--data PATH] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, so the benchmarks folder is on sys.path.
from training_throughput import loop_rate, throughput_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cms" / "Zmumu_Run2011A.csv"


def write_config(folder: Path, data: Path, family: str, steps: int, batch_size: int, device: str) -> Path:
    """Write a config that trains about ``steps`` steps with the family's default network."""
    from cmsgen.engine.training.config import dumps_toml

    path = folder / "config.toml"
    path.write_text(dumps_toml(throughput_config(data, family, steps, batch_size, device)), encoding="utf-8")
    return path


def train(config: Path, nproc: int, folder: Path, name: str, batch_size: int) -> tuple[float, float]:
    """Run ``cmsgen-tui train`` with ``nproc`` ranks and return (loop events/s, command wall seconds)."""
    command = [sys.executable, "-m", "cmsgen.tui", "train", str(config), "--run-dir", str(folder), "--name", name]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    lines = (folder / name / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return loop_rate([json.loads(line) for line in lines], batch_size), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="gan", choices=("gan", "vae", "flow"))
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch size, the same for both sides")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both sides, whose medians are printed")
    args = parser.parse_args()

    import torch

    print(
        f"family {args.family}, global batch {args.batch_size}, about {args.steps} steps, device {args.device}, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs"
    )
    rates: dict[int, list[float]] = {1: [], 2: []}
    walls: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        config = write_config(folder, args.data, args.family, args.steps, args.batch_size, args.device)
        for round_number in range(1, args.rounds + 1):
            for nproc in (1, 2):
                rate, wall = train(config, nproc, folder / "runs", f"round{round_number}-nproc{nproc}", args.batch_size)
                rates[nproc].append(rate)
                walls[nproc].append(wall)
            print(
                f"round {round_number}: 1 process {rates[1][-1]:.0f} events/s ({walls[1][-1]:.1f} s), "
                f"2 ranks {rates[2][-1]:.0f} events/s ({walls[2][-1]:.1f} s)"
            )

    single_rate, two_rank_rate = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"medians over {args.rounds} rounds:")
    print(f"1 process   {single_rate:10.0f} events/s   command {statistics.median(walls[1]):6.1f} s")
    print(f"2 ranks     {two_rank_rate:10.0f} events/s   command {statistics.median(walls[2]):6.1f} s")
    print(f"2 ranks / 1 process = {two_rank_rate / single_rate:.2f}")


if __name__ == "__main__":
    main()
