"""Shared fixtures: the real CMS files in ``../shared/data`` and a small synthetic sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CMSGEN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_logs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send log files of the code under test to a temporary folder, not the user's cache."""
    log_dir = tmp_path_factory.mktemp("logs")
    monkeypatch.setenv("CMSGEN_LOG_DIR", str(log_dir))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the folder of real CMS files, or skip when this checkout has none beside it."""
    if not (SHARED_DATA / "cms").is_dir():
        pytest.skip(f"real CMS data not found at {SHARED_DATA}; set CMSGEN_SHARED_DATA to its folder")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cms_data(shared_data: Path) -> Path:
    return shared_data / "cms"


@pytest.fixture(scope="session")
def legacy_data(shared_data: Path) -> Path:
    return shared_data / "legacy"
