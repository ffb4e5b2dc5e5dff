"""The missing-field report, serial against a two-worker local Dask cluster.

Writes a synthetic NanoAOD sample of 20 files of 500,000 events each (or reuses
it when its manifest exists), then in one process times:

  (a) ``build_report`` over the files (the serial pass);
  (b) ``build_report_dask`` over the same files on a ``LocalCluster`` of
      ``--workers`` worker processes with one thread each; starting the cluster
      is timed apart;
  (c) ``build_report`` without its read-ahead thread, all work in one thread,
      the single-thread cost that each Dask worker is compared with.

It checks that the reports of (a) and (b) are equal (all but ``elapsed_seconds``)
and prints the times and the speed-up a / b.

Usage:
    python benchmarks/report_dask.py [--files 20] [--events-per-file 500000] [--workers 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

DEFAULT_WORKDIR = Path(__file__).resolve().parent / "output" / "report_dask"


def write_files(directory: Path, n_files: int, events_per_file: int) -> list[Path]:
    from cmsgen.engine.sample import write_sample

    sample = directory / f"sample_{n_files}x{events_per_file}"
    # The manifest is written last, so a sample cut short by an interrupted run is written again.
    if not (sample / "manifest.json").is_file():
        needed = n_files * events_per_file * 80  # about 60 bytes per synthetic NanoAOD event, measured
        free = shutil.disk_usage(directory).free
        if free < 2 * needed:
            raise SystemExit(f"{directory} has {free / 1e9:.1f} GB free; the sample needs about {needed / 1e9:.1f} GB: choose another --workdir.")
        write_sample(sample, n_events=n_files * events_per_file, seed=1, layouts=("nanoaod",), n_files=n_files)
    return sorted(path for path in (sample / "nanoaod").glob("*.root") if "empty" not in path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--events-per-file", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local Dask cluster")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="folder of the synthetic sample (reused when complete)")
    parser.add_argument("--step-size", type=int, default=200_000)
    args = parser.parse_args()

    from cmsgen.engine.report import build_report
    from cmsgen.engine.report.parallel import build_report_dask
    from cmsgen.engine.sources.partitions import dask_client

    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files = write_files(args.workdir, args.files, args.events_per_file)
    print(f"sample: {len(files)} files of {args.events_per_file:,} events, written or reused in {time.perf_counter() - started:.1f} s")
    print(f"CPU cores visible to this process: {len(os.sched_getaffinity(0))}")

    # Warm the page cache so both runs read from memory.
    for path in files:
        path.read_bytes()

    started = time.perf_counter()
    serial = build_report(files, step_size=args.step_size).to_dict()
    serial_seconds = time.perf_counter() - started

    started = time.perf_counter()
    build_report(files, step_size=args.step_size, read_ahead=False)
    one_thread_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with dask_client(None, n_workers=args.workers) as client:
        startup_seconds = time.perf_counter() - started
        started = time.perf_counter()
        parallel = build_report_dask(files, client, step_size=args.step_size).to_dict()
        dask_seconds = time.perf_counter() - started

    serial.pop("elapsed_seconds")
    parallel.pop("elapsed_seconds")
    if parallel != serial:
        raise SystemExit("The Dask report differs from the serial report; this is a bug.")

    print(f"serial build_report:        {serial['n_events']:,} events in {serial_seconds:.2f} s")
    print(f"serial, no read-ahead:      {one_thread_seconds:.2f} s")
    print(f"Dask, {args.workers} workers:            {parallel['n_events']:,} events in {dask_seconds:.2f} s (cluster start {startup_seconds:.2f} s, not included)")
    print("reports equal: yes")
    print(f"speed-up serial / Dask: {serial_seconds / dask_seconds:.2f}")


if __name__ == "__main__":
    main()
