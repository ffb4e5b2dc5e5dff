"""Time from starting a Python process that opens the app on PATH to the first painted frame.

Each start is a new ``python -c`` process that imports the app, runs it with
``headless=True`` and exits after the first refresh of the screen, so the time
includes interpreter start-up and every import. Prints the median of several starts.

With ``--demo`` each start runs ``cmsgen-tui demo`` instead, on a synthetic
sample written once beforehand into ``--cache-dir``, so the time also includes
the demo's check of the sample. That child imports the app before the command
runs, to hook its first paint. The command imports the app anyway before it
opens it, so the total import time is the same.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 5
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cms" / "uproot-Zmumu.root"

CHILD = """
import sys, time
start = float(sys.argv[1])
from pathlib import Path
from cmsgen.tui.app import CmsgenApp

import cmsgen.tui.app

class FirstPaint(CmsgenApp):
    # Textual resolves a relative CSS_PATH next to the subclass's module, which -c does not have.
    CSS_PATH = str(Path(cmsgen.tui.app.__file__).with_name("app.tcss"))

    def on_mount(self) -> None:
        super().on_mount()
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        self.first_paint = time.time() - start
        self.exit()

app = FirstPaint([Path(sys.argv[2])], Path(sys.argv[3]))
app.run(headless=True, size=(80, 24))
print(f"{app.first_paint:.3f}")
"""


DEMO_CHILD = """
import sys, time
start = float(sys.argv[1])
import cmsgen.tui.app as app_module

original_mount = app_module.CmsgenApp.on_mount
original_run = app_module.CmsgenApp.run

def painted(app):
    app.first_paint = time.time() - start
    app.exit()

def on_mount(self):
    original_mount(self)
    self.call_after_refresh(painted, self)

def run(self, *args, **kwargs):
    original_run(self, headless=True, size=(80, 24))
    print(f"{self.first_paint:.3f}")

app_module.CmsgenApp.on_mount = on_mount
app_module.CmsgenApp.run = run
from cmsgen.tui.cli import main
main(["demo", "--cache-dir", sys.argv[2], "--runs-dir", sys.argv[3]])
"""


def write_demo_sample(cache_dir: Path) -> None:
    """Write the demo's sample into ``cache_dir`` unless it is there, so that no timed start writes it."""
    from cmsgen.engine.sample import MANIFEST_NAME, write_sample
    from cmsgen.tui.commands.demo import DEMO_EVENTS

    if not (cache_dir / "sample" / MANIFEST_NAME).is_file():
        write_sample(cache_dir / "sample", n_events=DEMO_EVENTS, seed=0)


def time_starts(child: str, arguments: list[str]) -> list[float]:
    """Run the code ``child`` with ``arguments`` ``REPEATS`` times and return each first-paint time, in seconds."""
    times = []
    for _ in range(REPEATS):
        start = time.time()
        result = subprocess.run([sys.executable, "-c", child, str(start), *arguments], capture_output=True, text=True, check=True)
        times.append(float(result.stdout.strip().splitlines()[-1]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="Time `cmsgen-tui demo` instead of the app on the Zmumu file.")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path("/tmp/cmsgen-bench-cache"), help="Cache folder of the demo's sample (with --demo)."
    )
    options = parser.parse_args()

    if options.demo:
        write_demo_sample(options.cache_dir)
        times = time_starts(DEMO_CHILD, [str(options.cache_dir), "/tmp/cmsgen-bench-runs"])
        subject = "`cmsgen-tui demo` with its sample written"
    else:
        times = time_starts(CHILD, [str(DATA), "/tmp/cmsgen-bench-runs"])
        subject = "the Files screen"
    print(f"first paint of {subject} at 80x24: median {statistics.median(times):.3f} s over {REPEATS} starts "
          f"(min {min(times):.3f} s, max {max(times):.3f} s), process start and imports included")


if __name__ == "__main__":
    main()
