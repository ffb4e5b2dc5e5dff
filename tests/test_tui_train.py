"""Pilot tests of the Train screen: the form, real short training runs started from it, resume and errors."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from test_tui_runs import make_run, run_async, wait_for
from textual import events
from textual.widgets import Input, Label, Select

from cmsgen.engine.errors import EXIT_INTERRUPTED
from cmsgen.engine.training.config import dumps_toml, load_config
from cmsgen.tui.app import CmsgenApp
from cmsgen.tui.screens.error import ErrorScreen
from cmsgen.tui.screens.train import SettingsError, TrainScreen, parse_optional, write_requested_config
from cmsgen.tui.widgets.loss_panel import LossPanel, MetricHistory
from cmsgen.tui.widgets.run_monitor import RunMonitor

REPO_ROOT = Path(__file__).resolve().parents[1]
GAN_CONFIG = REPO_ROOT / "sample_configs" / "gan_zmumu_2010.toml"
FLOW_CONFIG = REPO_ROOT / "sample_configs" / "flow_doublemu_2012.toml"
VAE_CONFIG = REPO_ROOT / "sample_configs" / "vae_zmumu_2011.toml"
DOUBLEMU_FILE = "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"


def write_run_config(run_dir: Path, config: Path = VAE_CONFIG) -> Path:
    """Write ``config``, resolved, as the run's ``config.toml`` the way the trainer does, and return its path."""
    path = run_dir / "config.toml"
    path.write_text(dumps_toml(load_config(config).to_dict()))
    return path


def notification_texts(app: CmsgenApp) -> list[str]:
    return [notification.message for notification in app._notifications]


def data_source(screen: TrainScreen) -> str:
    return str(screen.query_one("#train-data-source", Label).render())


async def type_config(pilot, screen: TrainScreen, config: Path) -> None:  # type: ignore[no-untyped-def]
    """Type ``config`` into the Config path field and wait until the Data field shows its data."""
    screen.query_one("#train-config-path", Input).value = str(config)
    # The sample config chosen at mount can finish reading after the path is typed.
    assert await wait_for(pilot, lambda: screen._shown_config == config, tries=400)
    assert await wait_for(pilot, lambda: data_source(screen) == "from config", tries=400)


@run_async
async def test_train_starts_real_run(cms_data: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], runs_dir, initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        await type_config(pilot, screen, GAN_CONFIG)
        screen.query_one("#train-epochs", Input).value = "2"
        screen.query_one("#train-batch", Input).value = "64"
        screen.set_focus(None)
        await pilot.press("s")

        monitor = screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: screen.process is not None, tries=400)
        assert monitor.run_dir is not None
        assert await wait_for(pilot, lambda: monitor.rows_received > 0, tries=1200)
        assert "loss_critic" in monitor.history.loss_names()
        assert await wait_for(pilot, lambda: (monitor.status or {}).get("state") == "finished", tries=1200)
        assert screen.process.wait(timeout=60) == 0

        # Resume the finished run with the Epochs field raised: one more epoch.
        first_process = screen.process
        screen.query_one("#train-epochs", Input).value = "3"
        screen.set_focus(None)
        await pilot.press("r")
        assert screen.process is not first_process
        assert await wait_for(pilot, lambda: (monitor.status or {}).get("total_epochs") == 3, tries=1200)
        assert await wait_for(pilot, lambda: (monitor.status or {}).get("state") == "finished", tries=1200)
        assert screen.process.wait(timeout=60) == 0
        assert not isinstance(app.screen, ErrorScreen)

    status = json.loads((monitor.run_dir / "status.json").read_text())
    assert status["total_epochs"] == 3
    assert status["epoch"] == 3
    assert "--epochs 3" in (monitor.run_dir / "train-process.log").read_text()
    config_text = (monitor.run_dir / "config.toml").read_text()
    assert "batch_size = 64" in config_text
    # The launcher's requested config and the process output live in the run directory.
    assert (monitor.run_dir / "requested-config.toml").is_file()
    assert (monitor.run_dir / "train-process.log").is_file()
    assert not (runs_dir / ".launch").exists()


@run_async
async def test_start_waits_for_config_read(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        screen.query_one("#train-epochs", Input).value = "1"
        screen.query_one("#train-batch", Input).value = "64"
        screen.query_one("#train-config-path", Input).value = str(GAN_CONFIG)
        # Press s while the config is read, before the screen handles the read result.
        screen.show_config_data()
        assert data_source(screen) == "reading config…"
        screen.action_start()
        assert screen.process is None
        assert await wait_for(pilot, lambda: screen.process is not None, tries=400)
        assert any("starts when the read ends" in text for text in notification_texts(app))
        monitor = screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: (monitor.status or {}).get("state") == "finished", tries=1200)
        assert screen.process.wait(timeout=60) == 0
    # The run trained on the config's own data, not on an empty Data field.
    config_text = (monitor.run_dir / "config.toml").read_text()
    assert "uproot-Zmumu.root" in config_text


@run_async
async def test_start_during_config_pick(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        assert await wait_for(pilot, lambda: data_source(screen) == "from config", tries=400)
        screen.query_one("#train-epochs", Input).value = "1"
        screen.query_one("#train-batch", Input).value = "256"
        choice = screen.query_one("#train-config-choice", Select)
        choice.focus()
        await pilot.press("enter")
        await pilot.pause()
        options = [value for _, value in choice._options]
        await pilot.press(*["down"] * (options.index(str(VAE_CONFIG)) - options.index(choice.value)))
        # Enter and s reach the app in one batch, as they can over a slow SSH link.
        app.post_message(events.Key("enter", None))
        app.post_message(events.Key("s", "s"))

        assert await wait_for(pilot, lambda: screen.process is not None, tries=400)
        assert choice.value == str(VAE_CONFIG)
        monitor = screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: (monitor.status or {}).get("state") == "finished", tries=1200)
        assert screen.process.wait(timeout=60) == 0
    assert "Zmumu_Run2011A.csv" in (monitor.run_dir / "config.toml").read_text()


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
        assert await wait_for(pilot, lambda: data_source(screen) == "invalid config", tries=400)
        await pilot.press("s")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "transformer" in str(app.screen.query_one("#error-message").render())


@run_async
async def test_unavailable_device_fails_plainly(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data / "uproot-Zmumu.root"], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        await type_config(pilot, screen, GAN_CONFIG)
        screen.query_one("#train-device", Select).value = "cuda"
        screen.set_focus(None)
        await pilot.press("s")

        assert await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), tries=600)
        assert "CUDA" in str(app.screen.query_one("#error-message").render())
        status_line = str(screen.query_one("#run-status").render())
        assert "failed before it started" in status_line


@run_async
async def test_stop_before_training_is_no_error(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "early", "failed", 0)
    app = CmsgenApp([tmp_path], tmp_path, initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        # A real process that ends as train does when SIGTERM arrives while it reads its data.
        screen.process_run = run_dir
        screen._stop_requested = run_dir
        screen.process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({EXIT_INTERRUPTED})"])

        assert await wait_for(pilot, lambda: any("stopped before training started" in text for text in notification_texts(app)), tries=400)
        assert not isinstance(app.screen, ErrorScreen)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_learning_rate_rejects_non_finite(text: str) -> None:
    with pytest.raises(SettingsError, match="not a finite number"):
        parse_optional(text, float, "learning rate", 0.0)


def test_learning_rate_accepts_number() -> None:
    assert parse_optional(" 0.002 ", float, "learning rate", 0.0) == 0.002
    assert parse_optional("", float, "learning rate", 0.0) is None


@run_async
async def test_data_field_shows_config_data(cms_data: Path, tmp_path: Path) -> None:
    app = CmsgenApp([cms_data], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        assert screen.query_one("#train-config-choice", Select).value == str(FLOW_CONFIG.resolve())
        data = screen.query_one("#train-data", Input)
        assert await wait_for(pilot, lambda: data.value.endswith(DOUBLEMU_FILE))
        assert str(cms_data) != data.value
        assert await wait_for(pilot, lambda: data_source(screen) == "from config")

        # Unedited data leave the config's paths in the run's config.
        settings = screen.read_settings()
        assert settings.data == ()
        written = write_requested_config(settings, tmp_path / "run")
        assert load_config(written).data.paths == load_config(FLOW_CONFIG).data.paths

        zmumu = str(cms_data / "uproot-Zmumu.root")
        data.value = zmumu
        assert await wait_for(pilot, lambda: data_source(screen) == "edited")
        assert screen.read_settings().data == (zmumu,)

        data.value = ""
        assert await wait_for(pilot, lambda: data_source(screen) == "from config")
        assert screen.read_settings().data == ()


@run_async
async def test_typed_config_replaces_data(tmp_path: Path) -> None:
    app = CmsgenApp([tmp_path], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        data = screen.query_one("#train-data", Input)
        screen.query_one("#train-config-path", Input).value = str(VAE_CONFIG)
        assert await wait_for(pilot, lambda: data.value.endswith("Zmumu_Run2011A.csv"))

        broken = tmp_path / "broken.toml"
        broken.write_text("[model]\nfamily = 'vae'\n[data]\nfeature_set = 'dimuon'\n")
        screen.query_one("#train-config-path", Input).value = str(broken)
        assert await wait_for(pilot, lambda: data_source(screen) == "invalid config")
        assert data.value == ""
        assert await wait_for(pilot, lambda: any("data.paths is missing" in text for text in notification_texts(app)))
        assert all(not text.startswith("Traceback") for text in notification_texts(app))


@run_async
async def test_attach_fills_form_from_run(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "vae-attached", "finished", 20)
    config = write_run_config(run_dir)
    expected_data = shlex.join(load_config(config).data.paths)
    app = CmsgenApp([tmp_path], tmp_path, initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: getattr(app.screen, "listed", False))
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.query_one("#train-config-path", Input).value == str(config))
        assert screen.query_one("#train-config-choice", Select).value is Select.NULL
        assert await wait_for(pilot, lambda: screen.query_one("#train-data", Input).value == expected_data)
        assert screen.read_settings().name.startswith("vae-attached-")


@run_async
async def test_attach_option_fills_form(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "vae-option", "finished", 20)
    config = write_run_config(run_dir)
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        assert await wait_for(pilot, lambda: screen.query_one("#train-config-path", Input).value == str(config))
        # The Select's own Changed message for its initial value must not bring the sample config back.
        await pilot.pause()
        assert screen.query_one("#train-config-path", Input).value == str(config)
        assert await wait_for(pilot, lambda: screen.query_one("#train-data", Input).value.endswith("Zmumu_Run2011A.csv"))


@run_async
async def test_resume_finished_needs_more_epochs(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "done", "finished", 40)
    write_run_config(run_dir)
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        monitor = screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: monitor.rows_received == 40)
        await pilot.press("r")
        expected = "Run done already trained 2 epochs: set Epochs above 2 to train further."
        assert await wait_for(pilot, lambda: expected in notification_texts(app))
        assert screen.process is None

        screen.query_one("#train-epochs", Input).value = "2"
        screen.set_focus(None)
        app.clear_notifications()
        await pilot.press("r")
        assert await wait_for(pilot, lambda: expected in notification_texts(app))
        assert screen.process is None


@run_async
async def test_failed_resume_shows_output_once(tmp_path: Path) -> None:
    # A finished run without checkpoints or data. The resumed process exits with an error and
    # leaves the state "finished", so only its exit code shows the error.
    run_dir = make_run(tmp_path, "broken", "finished", 40)
    write_run_config(run_dir)
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        monitor = screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: monitor.rows_received == 40)
        screen.query_one("#train-epochs", Input).value = "5"
        screen.set_focus(None)
        await pilot.press("r")
        assert screen.process is not None
        assert await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), tries=1200)
        message = str(app.screen.query_one("#error-message").render())
        lines = message.splitlines()
        assert lines[0] == f"The training process of run broken exited with code {screen.process.returncode}."
        assert not any(line.startswith("$ ") for line in lines)
        assert any(line.startswith("Error:") for line in lines)
        assert lines[-1] == f"Process output: {run_dir / 'train-process.log'}"
        assert not any("exited with code" in text for text in notification_texts(app))
        assert "--resume" in (run_dir / "train-process.log").read_text()


@run_async
async def test_stopped_run_says_press_r(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "paused", "stopped", 20)
    status = json.loads((run_dir / "status.json").read_text())
    status["message"] = f"stopped at step 20 (received SIGTERM). Resume with --resume {run_dir}"
    (run_dir / "status.json").write_text(json.dumps(status))
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        monitor = app.screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: monitor.rows_received == 20)
        text = str(monitor.query_one("#run-status").render())
        assert "Press r to resume." in text
        assert "--resume" not in text
        assert await wait_for(pilot, lambda: "Run paused stopped: press r on the Train screen to resume." in notification_texts(app))


@run_async
async def test_panel_titles_name_modes(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "modes", "finished", 60)
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        monitor = app.screen.query_one(RunMonitor)
        assert await wait_for(pilot, lambda: monitor.rows_received == 60)
        loss_panel = monitor.query_one("#loss-panel", LossPanel)
        metric_panel = monitor.query_one("#metric-panel", LossPanel)
        assert loss_panel.render_text(50, 14).plain.splitlines()[0] == "Losses"

        await pilot.press("y")
        assert loss_panel.render_text(50, 14).plain.splitlines()[0] == "Losses (log y)"
        assert metric_panel.render_text(50, 14).plain.splitlines()[0].startswith("w1_mass (log y)  best")
        await pilot.press("m")
        assert loss_panel.render_text(50, 14).plain.splitlines()[0] == "Losses (smoothed, log y)"
        await pilot.press("y")
        assert loss_panel.render_text(50, 14).plain.splitlines()[0] == "Losses (smoothed)"


@pytest.mark.parametrize(
    ("smooth", "logy", "width", "expected"),
    [
        (False, False, 80, "w1_mass  best 0.4568 @ step 123456"),
        (False, True, 35, "w1_mass (log y)  best 0.457 @123456"),
        (False, True, 34, "w1_mass (log y) best 0.457"),
        (True, True, 32, "w1_mass (smooth, log) best 0.457"),
        (True, True, 12, "w1_mass (smo"),
    ],
)
def test_panel_title_fits_width(smooth: bool, logy: bool, width: int, expected: str) -> None:
    panel = LossPanel("w1_mass", MetricHistory(), metrics=["w1_mass"], mark_best=True)
    panel.smooth = smooth
    panel.logy = logy

    assert panel.panel_title((123456.0, 0.45678), width) == expected


@run_async
async def test_loss_panel_leaves_settings_out(tmp_path: Path) -> None:
    run_dir = tmp_path / "vae-beta"
    run_dir.mkdir()
    write_run_config(run_dir)
    rows = [
        {"step": step, "epoch": 0, "reconstruction": 8.0 - step / 100, "kl": 1.0, "beta": step / 500,
         "loss": 8.0, "grad_norm": 1.0, "lr": 1e-3, "events_per_second": 500.0}
        for step in range(20, 220, 20)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    make_run(tmp_path, "vae-beta", "finished", 0)
    app = CmsgenApp([tmp_path], tmp_path, attach_run=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        monitor = app.screen.query_one(RunMonitor)
        loss_panel = monitor.query_one("#loss-panel", LossPanel)
        assert await wait_for(pilot, lambda: monitor.rows_received == 10)
        assert await wait_for(pilot, lambda: "beta" in monitor.history.settings)
        assert loss_panel.plotted_names() == ["reconstruction", "kl", "loss"]
        status_text = str(monitor.query_one("#run-status").render())
        assert "beta 0.4" in status_text
        assert "500 ev/s" in status_text


@run_async
async def test_attach_clears_typed_settings(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "vae-typed", "finished", 20)
    write_run_config(run_dir)
    app = CmsgenApp([tmp_path], tmp_path, initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.query_one("#train-epochs", Input).value = "7"
        screen.query_one("#train-lr", Input).value = "0.01"
        screen.show_run_config(run_dir)
        await pilot.pause()

        assert screen.query_one("#train-epochs", Input).value == ""
        assert screen.query_one("#train-lr", Input).value == ""


@run_async
async def test_config_change_drops_previous_data(tmp_path: Path) -> None:
    app = CmsgenApp([tmp_path], tmp_path / "runs", initial_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        data = screen.query_one("#train-data", Input)
        assert await wait_for(pilot, lambda: data.value.endswith(DOUBLEMU_FILE))
        screen.query_one("#train-config-path", Input).value = str(VAE_CONFIG)
        await pilot.pause()

        # While the new config is read, the old config's paths must not count as edited data.
        assert screen.read_settings().data == ()
        assert await wait_for(pilot, lambda: data.value.endswith("Zmumu_Run2011A.csv"))
        assert screen.read_settings().data == ()

