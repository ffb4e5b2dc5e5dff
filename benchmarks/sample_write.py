"""Measure the time and peak memory of writing the synthetic sample.

Usage: python benchmarks/sample_write.py [N_EVENTS] [--layout nanoaod] [--out DIR]

Writes N_EVENTS (default 10 million) events in the NanoAOD layout alone by
default, because 10 million events in the CSV layout take about 1.3 GB of
text. Prints the wall time, the events per second and the peak resident set
size from ``resource.getrusage`` (kilobytes on Linux). The target is a peak
under 1 GB, whatever N_EVENTS is, because events are generated and written
in chunks.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cmsgen.engine.sample import LAYOUTS, write_sample


def peak_rss_megabytes() -> float:
    """Return this process's peak resident set size in MB (``ru_maxrss`` is in kB on Linux)."""
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_events", nargs="?", type=int, default=10_000_000, help="events to write (default 10 million)")
    parser.add_argument("--layout", action="append", choices=LAYOUTS, help="layout to write; repeat for several (default nanoaod)")
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary folder, removed afterwards)")
    arguments = parser.parse_args()

    layouts = tuple(arguments.layout or ("nanoaod",))
    directory = arguments.out or Path(tempfile.mkdtemp(prefix="cmsgen-sample-"))
    baseline = peak_rss_megabytes()
    start = time.perf_counter()
    try:
        manifest = write_sample(directory, n_events=arguments.n_events, layouts=layouts)
        elapsed = time.perf_counter() - start
        size = sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
    finally:
        if arguments.out is None:
            shutil.rmtree(directory, ignore_errors=True)

    print(f"layouts: {', '.join(layouts)}; events: {manifest.n_events:,}; files: {len(manifest.files)}; bytes written: {size:,}")
    print(f"time: {elapsed:.1f} s ({manifest.n_events / elapsed:,.0f} events/s)")
    print(f"peak RSS: {peak_rss_megabytes():.0f} MB (after imports: {baseline:.0f} MB); target under 1024 MB")


if __name__ == "__main__":
    main()
