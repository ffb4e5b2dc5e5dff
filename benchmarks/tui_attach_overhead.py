"""Slowdown of a short training run when the Train screen follows it live.

Runs the same headless training (the GAN sample config on the 2010 Z->mumu file,
a few epochs) twice per repeat: alone, and with the app open in this process
(headless Textual at 80x24) with its panels attached to the run. Both runs are
separate ``train`` processes, and the script prints their wall times and the ratio.
Run: python benchmarks/tui_attach_overhead.py [EPOCHS]
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "sample_configs" / "gan_zmumu_2010.toml"
REPEATS = 2


def train_command(runs_dir: Path, name: str, epochs: int) -> list[str]:
    return [sys.executable, "-m", "cmsgen.tui", "train", str(CONFIG), "--epochs", str(epochs), "--run-dir", str(runs_dir), "--name", name]


def train_alone(runs_dir: Path, name: str, epochs: int) -> float:
    start = time.perf_counter()
    subprocess.run(train_command(runs_dir, name, epochs), check=True, capture_output=True)
    return time.perf_counter() - start


async def train_watched(runs_dir: Path, name: str, epochs: int) -> tuple[float, int]:
    """Train while the Train screen follows the run, and return the wall time and the rows it received."""
    from cmsgen.tui.app import CmsgenApp
    from cmsgen.tui.widgets.run_monitor import RunMonitor

    app = CmsgenApp([], runs_dir, initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        start = time.perf_counter()
        process = subprocess.Popen(train_command(runs_dir, name, epochs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        app.screen.use_run(runs_dir / name)  # type: ignore[attr-defined]
        while process.poll() is None:
            await pilot.pause(0.1)
        elapsed = time.perf_counter() - start
        monitor = app.screen.query_one(RunMonitor)
        # Give the monitor 5 s to read the last rows, outside the timed part.
        for _ in range(50):
            await pilot.pause(0.1)
        return elapsed, monitor.rows_received


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    alone, watched = [], []
    with tempfile.TemporaryDirectory() as folder:
        runs_dir = Path(folder)
        for repeat in range(REPEATS):
            alone.append(train_alone(runs_dir, f"alone-{repeat}", epochs))
            seconds, rows = asyncio.run(train_watched(runs_dir, f"watched-{repeat}", epochs))
            watched.append(seconds)
            print(f"repeat {repeat}: alone {alone[-1]:.2f} s, with the Train screen attached {seconds:.2f} s ({rows} rows shown)")
    ratio = statistics.median(watched) / statistics.median(alone)
    print(f"median alone {statistics.median(alone):.2f} s, attached {statistics.median(watched):.2f} s: ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
