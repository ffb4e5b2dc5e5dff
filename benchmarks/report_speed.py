"""Report cost against a plain read, and peak memory of the report on a large file.

Writes a synthetic NanoAOD sample (one file, no defects in the timed file is not
required: the planted defects are part of a real report's work), then in one
process times:

  (a) ``uproot.iterate`` over the same files and branches the report reads;
  (b) ``build_report`` over the same files (the full missing-field report);
  (c) the same report without its read-ahead thread, all work in one thread.

It prints the times and the ratios b/a (aim: at most 1.5) and c/a. With ``--memory``
it reports the peak resident memory of a report in a fresh subprocess (aim:
under 1 GB on a 10-million-event file).

Usage:
    python benchmarks/report_speed.py [--events 2000000] [--memory] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_nanoaod(directory: Path, n_events: int) -> list[Path]:
    from cmsgen.engine.sample import write_sample

    manifest_dir = directory / f"sample_{n_events}"
    # The manifest is written last, so a sample cut short by an interrupted run is written again.
    if not (manifest_dir / "manifest.json").is_file():
        write_sample(manifest_dir, n_events=n_events, seed=1, layouts=("nanoaod",), n_files=1)
    return sorted((manifest_dir / "nanoaod").glob("*.root"))


def plain_read(files: list[Path], branches: list[str], step_size: int) -> int:
    import uproot

    n = 0
    for arrays in uproot.iterate([f"{f}:Events" for f in files], branches, step_size=step_size, library="ak"):
        n += len(arrays)
    return n


def report_branches(files: list[Path]) -> list[str]:
    from cmsgen.engine.sources import open_dataset
    from cmsgen.engine.sources.dataset import needed_branches

    dataset = open_dataset(files)
    needed: set[str] = set()
    for entry in dataset.readable_files:
        needed |= {branch for _, branch in needed_branches(dataset.layout, entry)}
    return sorted(needed)


def measure_memory(files: list[Path]) -> tuple[float, float]:
    """Return the peak RSS and the peak anonymous RSS (MB) of a report in a fresh process.

    RSS includes the pages of the memory-mapped input file, which the kernel can
    drop at any time. The anonymous part is the memory the report allocates. A
    child keeps the peak RSS of the parent it was forked from, so it resets the
    peak first (writing 5 to /proc/self/clear_refs, Linux 4.0 and newer).
    """
    code = (
        "import sys, threading, time\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "def status():\n"
        "    return dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "peak = [0]\n"
        "def watch():\n"
        "    while True:\n"
        "        peak[0] = max(peak[0], int(status()['RssAnon'].split()[0]))\n"
        "        time.sleep(0.02)\n"
        "threading.Thread(target=watch, daemon=True).start()\n"
        "from cmsgen.engine.report import build_report\n"
        "build_report(sys.argv[1:])\n"
        "print(int(status()['VmHWM'].split()[0]) / 1024, peak[0] / 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True, text=True, check=True)
    peak, anonymous = result.stdout.strip().splitlines()[-1].split()
    return float(peak), float(anonymous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--memory", action="store_true", help="also measure the peak memory of a report in a subprocess")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cmsgen-bench")
    parser.add_argument("--step-size", type=int, default=200_000)
    args = parser.parse_args()

    from cmsgen.engine.report import build_report

    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files = [f for f in write_nanoaod(args.workdir, args.events) if f.stat().st_size > 10_000]
    print(f"sample: {len(files)} file(s), written or reused in {time.perf_counter() - started:.1f} s")
    branches = report_branches(files)
    print(f"branches read by the report: {', '.join(branches)}")

    # Warm the page cache so both sides read from memory.
    plain_read(files, branches, args.step_size)

    started = time.perf_counter()
    n_plain = plain_read(files, branches, args.step_size)
    plain_seconds = time.perf_counter() - started

    started = time.perf_counter()
    report = build_report(files, step_size=args.step_size)
    report_seconds = time.perf_counter() - started

    started = time.perf_counter()
    build_report(files, step_size=args.step_size, read_ahead=False)
    one_thread_seconds = time.perf_counter() - started

    print(f"plain uproot.iterate: {n_plain:,} events in {plain_seconds:.2f} s")
    print(f"build_report:         {report.n_events:,} events in {report_seconds:.2f} s")
    print(f"build_report, no read-ahead thread: {one_thread_seconds:.2f} s")
    print(f"ratio report / plain read: {report_seconds / plain_seconds:.2f} (aim <= 1.5)")
    print(f"ratio without the read-ahead thread: {one_thread_seconds / plain_seconds:.2f}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.memory:
        peak, anonymous = measure_memory(files)
        print(f"peak RSS of a report alone (subprocess): {peak:.0f} MB, memory-mapped input pages included")
        print(f"peak anonymous RSS of that report (sampled every 20 ms): {anonymous:.0f} MB (aim < 1024)")


if __name__ == "__main__":
    main()
