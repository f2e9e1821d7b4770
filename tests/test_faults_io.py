"""I/O faults with real parts: MLflow artifacts that cannot be stored, SIGTERM in a job, FIFOs and folders
where outputs belong."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from nnlib import MLPSpec, Network
from nnlib._io import NotRegularFileError, atomic_savez, atomic_write
from nnstudy.io import atomic_write_json, read_json
from nnstudy.tracking import RunLogger, log_to_run

REPO = Path(__file__).resolve().parents[1]


def store_with_blocked_artifacts(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    """A real SQLite MLflow store whose experiment's artifact location is a file, so that storing any
    artifact fails with an OSError (as a full or read-only disk would)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    blocker = tmp_path / "artifacts"
    blocker.write_text("a file where the artifact folder should be\n")
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("grid", artifact_location=blocker.as_uri())


def test_a_run_whose_artifacts_fail_ends_failed_not_finished(tmp_path):
    """The grid job's order: log_to_run (the dataset), then RunLogger.finish with the artifacts."""
    uri, client, experiment = store_with_blocked_artifacts(tmp_path)
    logger = RunLogger(client, experiment, "cell-seed1", tags={"status": "running"})
    dataset = tmp_path / "mnist.npz"
    dataset.write_bytes(b"data")
    log_to_run(uri, logger.run_id, dataset={"source": str(dataset), "name": "mnist-split", "digest": "0123abcd"})
    assert client.get_run(logger.run_id).info.status == "RUNNING", "log_to_run must leave a running run running"
    staged = tmp_path / "pending"
    staged.mkdir()
    (staged / "result.json").write_text("{}\n")
    with pytest.raises(OSError):
        logger.finish("FINISHED", metrics={"test_acc": 0.9}, tags={"status": "ok"}, artifact_dir=staged)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["status"] == "failed" and "Error" in run.data.tags["error"]
    assert run.data.metrics["test_acc"] == 0.9


def test_a_running_run_whose_model_cannot_be_logged_ends_failed(tmp_path):
    uri, client, experiment = store_with_blocked_artifacts(tmp_path)
    run_id = client.create_run(experiment, tags={"status": "running"}).info.run_id
    checkpoint = tmp_path / "model.npz"
    Network(MLPSpec(hidden=(8,)), seed=0).save(checkpoint)
    with pytest.raises(OSError):
        log_to_run(uri, run_id, checkpoint=checkpoint)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"


JOB = textwrap.dedent("""
    import os, sys, time, types
    from mlflow.tracking import MlflowClient
    from nnstudy.jobs import start_job
    from nnstudy.tracking import RunLogger

    start_job(types.SimpleNamespace(log=[], threads=1))  # what every workflow script does first
    logger = RunLogger(MlflowClient(sys.argv[1]), sys.argv[2], "job", tags={"status": "running"})
    with open(sys.argv[3] + ".tmp", "w") as handle:
        handle.write(logger.run_id)
    os.replace(sys.argv[3] + ".tmp", sys.argv[3])
    try:  # the grid job's shape: a failure of any kind ends the run FAILED
        while True:
            time.sleep(0.05)  # training
    except BaseException:
        logger.finish("FAILED", tags={"status": "failed"})
        raise
""")


def test_sigterm_ends_a_job_like_ctrl_c_and_its_run_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("grid", artifact_location=(tmp_path / "artifacts").as_uri())
    ready = tmp_path / "run_id"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", JOB, uri, experiment, str(ready)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():  # the condition: the job has started its run
            assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the job never started its run"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "KeyboardInterrupt: terminated by signal SIGTERM" in err.decode(errors="replace")
    run = client.get_run(ready.read_text())
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"


WRITERS = {
    "json": lambda path: atomic_write_json(path, {"a": 1}),
    "npz": lambda path: atomic_savez(path, {"x": np.ones(2)}),
    "bytes": lambda path: atomic_write(path, lambda handle: handle.write(b"x")),
}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_atomic_writes_refuse_a_fifo_or_a_folder_at_the_target(tmp_path, write):
    fifo, folder = tmp_path / "result.json", tmp_path / "model.npz"
    os.mkfifo(fifo)
    folder.mkdir()
    for target, kind in ((fifo, "a FIFO (named pipe)"), (folder, "a directory")):
        with pytest.raises(NotRegularFileError) as caught:
            write(target)
        assert f"{target} is {kind}, not a regular file" in str(caught.value)
        assert f"rm -r '{target}'" in str(caught.value)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "result.json"]  # no temporary file left


def test_read_json_refuses_a_fifo_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "store.json"
    os.mkfifo(fifo)

    def writer() -> None:  # a writer that would feed the FIFO, should the reader open it
        with open(fifo, "wb") as handle:
            handle.write(b'{"uri": "sqlite:///x"}\n')

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(NotRegularFileError, match=f"{fifo} is a FIFO .named pipe., not a regular file"):
            read_json(fifo)
    finally:  # release the writer whether or not the reader opened the FIFO
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        thread.join()
        os.close(fd)
    assert read_json(_regular(tmp_path)) == {"a": 1}


def _regular(folder: Path) -> Path:
    path = folder / "ok.json"
    atomic_write_json(path, {"a": 1})
    return path


def test_a_fifo_in_place_of_a_checkpoint_or_an_idx_file_is_refused_not_read(tmp_path):
    """Reading a FIFO would block for ever: the checkpoint loader and the IDX reader name it and stop."""
    from nnlib import CheckpointError, Network
    from nnstudy.mnist import IdxError, read_idx

    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="a FIFO .*refusing to read"):
        Network.load(str(fifo))
    idx = tmp_path / "train-images-idx3-ubyte.gz"
    os.mkfifo(idx)
    with pytest.raises(IdxError, match="train-images-idx3-ubyte.gz.*a FIFO"):
        read_idx(idx)


def test_a_fifo_in_a_local_mirror_is_skipped_for_the_next_mirror(tmp_path, tiny_mnist_dir):
    """A local mirror's file that is a named pipe would block the download past any deadline: it is refused
    unopened, named, and the next mirror is used; a FIFO where the download goes is refused too."""
    from nnstudy.io import NotRegularFileError
    from nnstudy.mnist import FILES, SHA256, fetch_file

    name = FILES["train_images"]
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    os.mkfifo(pipes / name)
    expected = hashlib.sha256((tiny_mnist_dir / name).read_bytes()).hexdigest()
    dest = tmp_path / "data"
    got = fetch_file(name, [str(pipes), str(tiny_mnist_dir)], dest, expected, deadline=5)
    assert got.read_bytes() == (tiny_mnist_dir / name).read_bytes()
    assert SHA256[name] != expected  # the tiny files are the test's own
    os.unlink(got)
    os.mkfifo(got)
    with pytest.raises(NotRegularFileError, match="FIFO"):
        fetch_file(name, [str(tiny_mnist_dir)], dest, expected, deadline=5)
