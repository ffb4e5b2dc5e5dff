"""Time from starting a Python process that opens the app on PATH to the first painted frame.

Each start is a new ``python -c`` process that imports the app, runs it with
``headless=True`` and exits after the first refresh of the screen, so the time
includes interpreter start-up and every import. Prints the median of several starts.
"""

from __future__ import annotations

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


def main() -> None:
    times = []
    for _ in range(REPEATS):
        start = time.time()
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(start), str(DATA), "/tmp/cmsgen-bench-runs"], capture_output=True, text=True, check=True
        )
        times.append(float(result.stdout.strip().splitlines()[-1]))
    print(f"first paint of the Files screen at 80x24: median {statistics.median(times):.3f} s over {REPEATS} starts "
          f"(min {min(times):.3f} s, max {max(times):.3f} s), process start and imports included")


if __name__ == "__main__":
    main()
