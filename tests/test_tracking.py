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


def test_a_study_folder_keeps_its_identity_when_moved(tmp_path):
    """The id that owns a folder's runs and trials lives in the folder: the path digest when first needed
    (what older folders were tagged with), then the same after a move; a damaged id file is named."""
    import hashlib

    from nnstudy.jobs import workflow_id

    first = tmp_path / "study"
    first.mkdir()
    value = workflow_id(first)
    assert value == hashlib.sha256(str(first.resolve()).encode()).hexdigest()[:12]
    assert (first / "results" / "workflow-id").read_text().strip() == value
    moved = tmp_path / "elsewhere" / "study moved"
    moved.parent.mkdir()
    first.rename(moved)
    assert workflow_id(moved) == value
    assert sorted(p.name for p in (moved / "results").iterdir()) == ["workflow-id"]  # no temporary file left
    (moved / "results" / "workflow-id").write_text("not an id\n")
    with pytest.raises(ValueError, match=r"workflow-id should hold .* 12 hexadecimal digits"):
        workflow_id(moved)


def test_a_server_lost_mid_study_fails_a_job_after_its_bounded_retries(monkeypatch):
    """Each job bounds MLflow's timeout and retries (config mlflow.http_timeout_s, http_retries), so a
    server that stops answering mid-study fails the job's next call, naming the server, instead of MLflow's
    default of minutes per call; a setting the user put in the environment is kept."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from nnstudy.tracking import bound_http_requests

    names = (MLFLOW_HTTP_REQUEST_TIMEOUT.name, MLFLOW_HTTP_REQUEST_MAX_RETRIES.name,
             MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name)  # fmt: skip
    for name in names:
        monkeypatch.delenv(name, raising=False)
    assert bound_http_requests("sqlite:///results/mlflow/mlflow.db", 1, 0) == {}
    monkeypatch.setenv(MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name, "3")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        chosen = bound_http_requests(uri, 1, 0)
        assert chosen == {MLFLOW_HTTP_REQUEST_TIMEOUT.name: "1", MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0"}
        assert os.environ[MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name] == "3"
        with pytest.raises(MlflowException, match=rf"{uri}.*([Tt]imeout|timed out)"):
            MlflowClient(uri).search_experiments(max_results=1)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_local_store_is_named_with_its_repair(tmp_path, damage):
    """A store overwritten or cut short stops the job at once, naming the file and the repair, where MLflow
    gives a bare SQLite error."""
    from nnstudy.tracking import StoreError, check_local_store

    db = tmp_path / "results" / "mlflow" / "mlflow.db"
    setup_store(f"sqlite:///{db}", "nnstudy", tmp_path / "artifacts")
    data = db.read_bytes()
    db.write_bytes(b"this is not a database " * 200 if damage == "garbage" else data[: len(data) // 3])
    for name in ("mlflow.db-wal", "mlflow.db-shm"):
        (db.parent / name).unlink(missing_ok=True)
    with pytest.raises(StoreError) as info:
        check_local_store(db)
    message = str(info.value)
    assert str(db) in message and "damaged" in message and "from a backup" in message
