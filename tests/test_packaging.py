"""Packaging rules: the engine stays free of UI libraries, and every package is installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
UI_MODULES = ("textual", "rich", "typer", "plotext")


def test_engine_imports_no_ui_library() -> None:
    code = (
        "import sys, pkgutil, importlib, cmsgen.engine\n"
        "for module in pkgutil.walk_packages(cmsgen.engine.__path__, 'cmsgen.engine.'):\n"
        "    importlib.import_module(module.name)\n"
        f"print(','.join(sorted(m for m in {UI_MODULES!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"cmsgen.engine imported UI modules: {result.stdout.strip()}"


def test_every_subpackage_is_listed() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in (("engine", "cmsgen.engine"), ("tui", "cmsgen.tui")):
        for init in (REPO_ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / top)
            found.add(".".join([name, *relative.parts]) if relative.parts else name)
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
