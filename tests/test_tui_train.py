"""Pilot test of the Train screen: a real short training run started from the form, followed live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_tui_runs import run_async, wait_for
from textual.widgets import Input

from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.screens.error import ErrorScreen
from cmsgen.tui.screens.train import SettingsError, TrainScreen, parse_optional
from cmsgen.tui.widgets.run_monitor import RunMonitor

REPO_ROOT = Path(__file__).resolve().parents[1]
GAN_CONFIG = REPO_ROOT / "sample_configs" / "gan_zmumu_2010.toml"


@run_async
async def test_train_starts_real_run(cms_data: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], runs_dir, initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        screen.query_one("#train-config-path", Input).value = str(GAN_CONFIG)
        screen.query_one("#train-epochs", Input).value = "2"
        screen.query_one("#train-batch", Input).value = "64"
        screen.set_focus(None)
        await pilot.press("s")

        monitor = screen.query_one(RunMonitor)
        assert screen.process is not None
        assert monitor.run_dir is not None
        assert await wait_for(pilot, lambda: monitor.rows_received > 0, tries=1200)
        assert "loss_critic" in monitor.history.loss_names()
        assert await wait_for(pilot, lambda: (monitor.status or {}).get("state") == "finished", tries=1200)
        assert screen.process.wait(timeout=60) == 0

    status = json.loads((monitor.run_dir / "status.json").read_text())
    assert status["total_epochs"] == 2
    config_text = (monitor.run_dir / "config.toml").read_text()
    assert "batch_size = 64" in config_text
    # The launcher's requested config and the process output live in the run directory.
    assert (monitor.run_dir / "requested-config.toml").is_file()
    assert (monitor.run_dir / "train-process.log").is_file()
    assert not (runs_dir / ".launch").exists()


@run_async
async def test_train_rejects_bad_settings(tmp_path: Path) -> None:
    app = CmsgenApp([tmp_path], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.query_one("#train-config-path", Input).value = str(GAN_CONFIG)
        screen.query_one("#train-epochs", Input).value = "two"
        screen.set_focus(None)
        await pilot.press("s")
        assert screen.process is None  # type: ignore[attr-defined]
        assert await wait_for(pilot, lambda: any("epochs 'two'" in n.message for n in app._notifications))

        screen.query_one("#train-epochs", Input).value = ""
        broken = tmp_path / "broken.toml"
        broken.write_text("[model]\nfamily = 'transformer'\n[data]\npaths = ['x.root']\n")
        screen.query_one("#train-config-path", Input).value = str(broken)
        await pilot.press("s")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "transformer" in str(app.screen.query_one("#error-message").render())


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_learning_rate_rejects_non_finite(text: str) -> None:
    with pytest.raises(SettingsError, match="not a finite number"):
        parse_optional(text, float, "learning rate", 0.0)


def test_learning_rate_accepts_number() -> None:
    assert parse_optional(" 0.002 ", float, "learning rate", 0.0) == 0.002
    assert parse_optional("", float, "learning rate", 0.0) is None
