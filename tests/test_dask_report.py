"""The Dask report and feature extraction against the serial ones, on a real two-worker local cluster."""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cmsgen.engine.errors import EXIT_CONFIG, UnreadableFileError
from cmsgen.engine.features import load_features
from cmsgen.engine.report import build_report
from cmsgen.engine.report.builder import ReportTotals, verdict_sets_for
from cmsgen.engine.report.parallel import build_report_dask
from cmsgen.engine.sample import write_sample
from cmsgen.engine.sources import open_dataset
from cmsgen.engine.sources.partitions import dask_client, root_file_tasks

# Small steps give each 1,000-event file several partitions, so order and partial failures matter.
STEP = 300


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A local cluster of two worker processes with one thread each, shared by the module."""
    with dask_client(None, n_workers=2) as dask_client_:
        yield dask_client_


@pytest.fixture(scope="module")
def broken_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic NanoAOD sample, a copy of one file cut at 60 % and a copy cut inside its header."""
    root = tmp_path_factory.mktemp("dask_sample")
    # Blocks of 400 events give every branch three baskets per file, so a cut file fails part way.
    write_sample(root, n_events=3000, seed=3, layouts=("nanoaod",), chunk_size=400)
    source = root / "nanoaod" / "nanoaod_0.root"
    data = source.read_bytes()
    broken = root / "broken"
    broken.mkdir()
    truncated = broken / "nanoaod_truncated.root"
    truncated.write_bytes(data[: len(data) * 6 // 10])
    cut_header = broken / "nanoaod_cut_header.root"
    cut_header.write_bytes(data[:600])
    return {"sample": root / "nanoaod", "truncated": truncated, "cut_header": cut_header}


def serial_and_dask(paths: list[Path], client: Any, step_size: int = STEP) -> tuple[dict[str, Any], dict[str, Any]]:
    serial = build_report(paths, step_size=step_size).to_dict()
    parallel = build_report_dask(paths, client, step_size=step_size).to_dict()
    serial.pop("elapsed_seconds")
    parallel.pop("elapsed_seconds")
    return serial, parallel


def unreadable_files(report: dict[str, Any]) -> dict[str, str]:
    return {Path(u["file"]).name: u["reason"] for u in report["unreadable"] if u["branch"] is None}


def test_synthetic_report_with_broken_files(client: Any, broken_sample: dict[str, Path]) -> None:
    paths = [broken_sample["sample"], broken_sample["truncated"], broken_sample["cut_header"]]
    serial, parallel = serial_and_dask(paths, client)
    assert parallel == serial
    unreadable = unreadable_files(parallel)
    assert unreadable["nanoaod_truncated.root"].startswith(f"Reading entries {STEP}-{2 * STEP} of ")
    assert "nanoaod_cut_header.root" in unreadable
    # The truncated file's first step is counted before the failure, as in the serial pass.
    assert parallel["n_events"] == 3000 + STEP


def test_ttree_files_go_through_uproot_dask(broken_sample: dict[str, Path]) -> None:
    dataset = open_dataset(broken_sample["sample"])
    entry = next(e for e in dataset.readable_files if e.path.name == "nanoaod_0.root")
    tasks = root_file_tasks(entry, STEP, len)
    assert tasks is not None
    assert tasks.steps == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    # The sample writes baskets of 400 entries; a step may be longer than STEP only to reach the next basket.
    aligned = root_file_tasks(entry, STEP, len, align_to_baskets=True)
    assert aligned is not None
    assert aligned.steps == [(0, 400), (400, 800), (800, 1000)]


def test_real_nanoaod_report(client: Any, cms_data: Path, broken_sample: dict[str, Path]) -> None:
    names = [
        "nanoAOD_2015_CMS_Open_Data_ttbar.root",
        "rootinbinder_aod2nanoaod_10000ev_run195397.root",
        "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root",
    ]
    real = [cms_data / name for name in names]
    missing = [str(path) for path in real if not path.is_file()]
    if missing:
        pytest.skip(f"real NanoAOD files not found: {', '.join(missing)}")
    serial, parallel = serial_and_dask([*real, broken_sample["sample"], broken_sample["truncated"]], client, step_size=2000)
    assert parallel == serial
    assert "nanoaod_truncated.root" in unreadable_files(parallel)
    # With steps of 2,000 entries the truncated copy fails in its first step and adds no events.
    assert parallel["n_events"] == 200 + 10_000 + 1000 + 3000


def test_real_pairs_and_poet_reports(client: Any, cms_data: Path, broken_sample: dict[str, Path], tmp_path: Path) -> None:
    csv_sample = tmp_path / "csv"
    write_sample(csv_sample, n_events=900, seed=4, layouts=("csv_pairs",))
    pairs = [cms_data / "uproot-Zmumu.root", cms_data / "Zmumu_Run2011A.csv", csv_sample / "csv_pairs"]
    poet = [cms_data / "poet2011_myoutput_50ev_run167675.root", cms_data / "poet2012_myoutput_100ev_run195397.root"]
    missing = [str(path) for path in pairs + poet if not path.exists()]
    if missing:
        pytest.skip(f"real CMS files not found: {', '.join(missing)}")
    serial, parallel = serial_and_dask(pairs, client, step_size=1000)
    assert parallel == serial
    assert parallel["n_events"] == 2304 + 10_583 + 900
    # POET joins several trees entry by entry; each tree is its own uproot.dask array.
    serial, parallel = serial_and_dask(poet, client, step_size=30)
    assert parallel == serial
    assert parallel["n_events"] == 150


def test_report_totals_pickle(broken_sample: dict[str, Path]) -> None:
    dataset = open_dataset(broken_sample["sample"])
    verdict_sets = verdict_sets_for(None)
    totals = ReportTotals()
    entry = dataset.readable_files[0]
    for chunk in dataset.iterate_file(entry, STEP):
        totals.update(chunk, verdict_sets)
    copy = pickle.loads(pickle.dumps(totals))
    assert copy.n_events == totals.n_events
    assert copy.multiplicity.to_dict() == totals.multiplicity.to_dict()
    assert copy.duplicates.to_dict() == totals.duplicates.to_dict()
    assert [q.to_dict() for q in copy.quality.values()] == [q.to_dict() for q in totals.quality.values()]


@pytest.mark.parametrize(("deduplicate", "max_events"), [(True, None), (False, None), (True, 1000), (False, 1000)])
def test_features_match_serial(client: Any, broken_sample: dict[str, Path], deduplicate: bool, max_events: int | None) -> None:
    paths = [broken_sample["sample"], broken_sample["cut_header"]]
    serial = load_features(paths, "dimuon", step_size=STEP, deduplicate=deduplicate, max_events=max_events)
    parallel = load_features(paths, "dimuon", step_size=STEP, deduplicate=deduplicate, max_events=max_events, dask=client)
    assert np.array_equal(parallel.values, serial.values, equal_nan=True)
    assert parallel.n_read == serial.n_read
    assert parallel.n_duplicates_dropped == serial.n_duplicates_dropped
    assert parallel.files == serial.files
    assert parallel.layout == serial.layout


def test_features_read_error_matches_serial(client: Any, broken_sample: dict[str, Path]) -> None:
    paths = [broken_sample["sample"], broken_sample["truncated"]]
    with pytest.raises(UnreadableFileError) as serial:
        load_features(paths, "dimuon", step_size=STEP)
    with pytest.raises(UnreadableFileError) as parallel:
        load_features(paths, "dimuon", step_size=STEP, dask=client)
    assert parallel.value.message == serial.value.message


def test_features_with_real_rntuple(client: Any, cms_data: Path, broken_sample: dict[str, Path]) -> None:
    rntuple = cms_data / "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
    if not rntuple.is_file():
        pytest.skip(f"real RNTuple file not found: {rntuple}")
    paths = [rntuple, broken_sample["sample"]]
    serial = load_features(paths, "dimuon", step_size=STEP)
    parallel = load_features(paths, "dimuon", step_size=STEP, dask=client)
    assert np.array_equal(parallel.values, serial.values, equal_nan=True)
    assert parallel.n_read == serial.n_read


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cmsgen.tui", *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_cli_dask_report_counts(broken_sample: dict[str, Path], tmp_path: Path) -> None:
    paths = [broken_sample["sample"], broken_sample["truncated"], broken_sample["cut_header"]]
    output = tmp_path / "report.json"
    done = run_cli("report", *map(str, paths), "--dask", "--dask-workers", "2", "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    parallel = json.loads(output.read_text())
    serial = build_report(paths).to_dict()
    assert parallel["n_events"] == serial["n_events"]
    assert parallel["quality"] == serial["quality"]
    assert parallel["duplicates"] == serial["duplicates"]
    assert parallel["verdict"] == serial["verdict"]
    assert parallel["unreadable"] == serial["unreadable"]
    assert f"{serial['n_events']:,}" in done.stdout


def closed_local_port() -> int:
    """Return a port on 127.0.0.1 that was free a moment ago, so nothing listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_cli_unreachable_scheduler(broken_sample: dict[str, Path]) -> None:
    address = f"tcp://127.0.0.1:{closed_local_port()}"
    done = run_cli("report", str(broken_sample["sample"]), "--scheduler", address, "--scheduler-timeout", "1", timeout=60)
    assert done.returncode == EXIT_CONFIG
    assert address in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@contextmanager
def silent_service() -> Iterator[str]:
    """Yield the tcp:// address of a local port that accepts connections and never sends a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield f"tcp://127.0.0.1:{silent.getsockname()[1]}"


def test_cli_silent_service_is_not_a_scheduler(broken_sample: dict[str, Path]) -> None:
    """A port that accepts connections but never completes the handshake (such as a dashboard) fails after the timeout."""
    with silent_service() as address:
        done = run_cli("report", str(broken_sample["sample"]), "--scheduler", address, "--scheduler-timeout", "1", timeout=60)
    assert done.returncode == EXIT_CONFIG
    assert f"No Dask scheduler responded at {address} within 1 s" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_invalid_scheduler_address(broken_sample: dict[str, Path]) -> None:
    done = run_cli("report", str(broken_sample["sample"]), "--scheduler", "nonsense://host", "--scheduler-timeout", "1", timeout=60)
    assert done.returncode == EXIT_CONFIG
    assert "nonsense://host is invalid" in done.stderr
    assert "Traceback" not in done.stderr


def test_copy_of_sample_file_is_readable(broken_sample: dict[str, Path], tmp_path: Path) -> None:
    """A whole copy of the file that the broken ones were cut from reads in full, so the cut is the cause."""
    copy = tmp_path / "nanoaod_copy.root"
    shutil.copyfile(broken_sample["sample"] / "nanoaod_0.root", copy)
    report = build_report([copy], step_size=STEP).to_dict()
    assert report["n_events"] == 1000
    assert report["unreadable"] == []


def test_training_on_dask_equals_serial(client: Any, broken_sample: dict[str, Path], tmp_path: Path) -> None:
    """A run whose config sets data.dask reads the same features and trains the same model."""
    from test_training import write_config

    from cmsgen.engine.training.config import load_config
    from cmsgen.engine.training.trainer import start_run

    config_path = write_config(tmp_path, broken_sample["sample"], "flow", epochs=1, batch_size=256)
    serial = start_run(load_config(config_path), runs_dir=tmp_path / "runs", name="serial").run()
    dask_config = load_config(config_path).with_overrides(dask=client.scheduler.address)
    assert dask_config.data.dask == client.scheduler.address
    on_dask = start_run(dask_config, runs_dir=tmp_path / "runs", name="dask").run()

    assert on_dask.state == "finished"
    assert on_dask.best_metric == serial.best_metric
    serial_rows = [json.loads(line) for line in (serial.run.path / "metrics.jsonl").read_text().splitlines()]
    dask_rows = [json.loads(line) for line in (on_dask.run.path / "metrics.jsonl").read_text().splitlines()]
    assert [row.get("loss") for row in dask_rows] == [row.get("loss") for row in serial_rows]
    assert 'dask = "' in (on_dask.run.path / "config.toml").read_text()


def test_sigterm_while_connecting_stops_train(broken_sample: dict[str, Path], tmp_path: Path) -> None:
    """SIGTERM before the first training step stops at once, and the run is marked stopped."""
    import signal
    import time

    from test_runs_cli import train_process
    from test_training import write_config

    config_path = write_config(tmp_path, broken_sample["sample"], "vae", epochs=1)
    status_path = tmp_path / "runs" / "waiting" / "status.json"
    with silent_service() as address, train_process(
        config_path, tmp_path, "--scheduler", address, "--run-dir", "runs", "--name", "waiting"
    ) as process:
        for _ in range(200):
            if status_path.exists():
                break
            time.sleep(0.05)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    status = json.loads(status_path.read_text())
    # No checkpoint exists yet, so the run cannot be resumed and does not look resumable.
    assert status["state"] == "failed"
    assert status["message"].startswith("interrupted before training started")



def test_nproc_checks_scheduler_before_ranks(broken_sample: dict[str, Path], tmp_path: Path) -> None:
    """With --nproc, a scheduler that does not respond is found before any rank starts or any run is written."""
    from test_training import write_config

    config_path = write_config(tmp_path, broken_sample["sample"], "vae", epochs=1)
    with silent_service() as address:
        done = run_cli("train", str(config_path), "--nproc", "2", "--scheduler", address, "--run-dir", str(tmp_path / "runs"), timeout=90)
    assert done.returncode == EXIT_CONFIG
    assert f"No Dask scheduler responded at {address}" in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--dask-workers", "3"], "--dask-workers needs --dask"),
        (["--scheduler", "tcp://127.0.0.1:8786", "--dask-workers", "3"], "leave it out with --scheduler"),
    ],
)
def test_cli_dask_workers_misuse(broken_sample: dict[str, Path], options: list[str], expected: str) -> None:
    done = run_cli("report", str(broken_sample["sample"]), *options, timeout=60)
    assert done.returncode == EXIT_CONFIG
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
