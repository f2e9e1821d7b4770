"""Store setup against a tracking server: a dead or silent one is reported at once, a live one is used."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from conftest import clean_env, snakemake, write_small_study
from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

from nnstudy.tracking import TrackingServerError, setup_store

DEAD = "http://127.0.0.1:9"  # the URI: nothing listens on the discard port


@pytest.fixture
def live_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 (one worker), yielded once it answers ``/health``:
    it can take a minute or more to start on a busy machine, so this waits for the answer, not a time."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts")],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + 900  # only against a server that hangs without exiting
    try:
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < give_up, f"no answer from {url}/health in 15 min: {log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5).close()
                break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_a_dead_tracking_server_is_reported_at_store_setup(tmp_path):
    """Issue 12, item 7: MLflow's retries took about 4 minutes; one check answers in seconds."""
    start = time.monotonic()
    with pytest.raises(TrackingServerError) as info:
        setup_store(DEAD, "nnstudy", tmp_path / "artifacts")
    assert time.monotonic() - start < 60  # a generous bound: the refused connection takes milliseconds
    message = str(info.value)
    assert f"tracking server {DEAD} (mlflow.tracking_uri) cannot be used" in message
    assert "Connection refused" in message and "mlflow server --host" in message
    assert "leave it empty for the local SQLite store" in message
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.name not in os.environ  # MLflow's own settings are restored
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.name not in os.environ


def test_a_server_that_never_answers_costs_one_timeout(tmp_path):
    """The socket listens (the kernel completes each connection) but nobody ever answers."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        message = r"with a 1 s timeout \(mlflow.server_check_timeout_s\), it gave: .*[Tt]imeout"
        with pytest.raises(TrackingServerError, match=message) as info:
            setup_store(uri, "nnstudy", tmp_path / "artifacts", check_timeout=1)
    assert uri in str(info.value)


def test_a_live_tracking_server_passes_the_check(tmp_path, live_server, monkeypatch):
    monkeypatch.setenv(MLFLOW_HTTP_REQUEST_MAX_RETRIES.name, "3")  # the user's own setting survives the check
    ids = setup_store(live_server, "nnstudy", tmp_path / "artifacts", check_timeout=120)  # no race on a busy machine
    assert set(ids) == {"grid", "lr-search"}
    assert os.environ[MLFLOW_HTTP_REQUEST_MAX_RETRIES.name] == "3"
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.name not in os.environ


def test_snakemake_stops_at_mlflow_store_with_the_message(tmp_path):
    """The small study with a dead tracking server: the mlflow_store job fails with the message, no job
    that logs to MLflow starts, and nothing claims the store is ready."""
    config = write_small_study(tmp_path)
    config["mlflow"]["tracking_uri"] = DEAD
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--cores", "2", timeout=600)
    assert proc.returncode != 0
    assert "Error in rule mlflow_store" in proc.stdout + proc.stderr
    message = f"TrackingServerError: the MLflow tracking server {DEAD} (mlflow.tracking_uri) cannot be used"
    assert message in (tmp_path / "results/logs/mlflow_store.log").read_text()
    assert message in proc.stderr  # the profile's show-failed-logs puts it on the terminal
    assert not (tmp_path / "results/mlflow/store.json").exists()
    assert not list(tmp_path.glob("results/grid/*/*/result.json"))
    assert not list(tmp_path.glob("results/logs/search/*/worker*.log"))
