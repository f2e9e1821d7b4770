"""Throw-away servers on 127.0.0.1 for the tests and benchmarks: PostgreSQL (Optuna's RDB storage) and an MLflow
tracking server. Each is a context manager that stops what it started, by PID."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> str | None:
    """Debian's PostgreSQL server programs, when installed (with runuser to run them as postgres)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return bins[-1] if bins and shutil.which("runuser") else None


@contextlib.contextmanager
def postgres(database: str = "optuna") -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1, run as the postgres user; yields the database's URL."""
    bin_dir = postgres_bin()
    assert bin_dir, "PostgreSQL is not installed (the README's test command installs it)"
    folder = Path(tempfile.mkdtemp(prefix="nnstudy-pg-", dir="/tmp"))
    folder.chmod(0o755)
    shutil.chown(folder, "postgres", "postgres")
    port = free_port()

    def as_postgres(*cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120)

    as_postgres(f"{bin_dir}/initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
    as_postgres(f"{bin_dir}/pg_ctl", "-D", str(folder / "data"), "-w", "-l", str(folder / "log"), "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")  # fmt: skip
    try:
        as_postgres(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        as_postgres(f"{bin_dir}/pg_ctl", "-D", str(folder / "data"), "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(folder: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1 with its store and artifact root in ``folder``; yields its URL."""
    port = free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination",
         str(folder / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        # ready when the tracking API itself answers: /health answers first, and the first API call then
        # sets up the store, which took more than the workflow's 10 s check on a busy machine (seen in CI)
        search = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", data=b'{"max_results": 1}',
                                        headers={"Content-Type": "application/json"})  # fmt: skip
        while True:
            try:
                urllib.request.urlopen(search, timeout=max(1.0, deadline - time.monotonic())).read()
                break
            except OSError:
                assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, f"the MLflow server did not answer within {timeout} s"
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
