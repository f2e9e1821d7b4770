"""What every Snakemake script needs: its log file, one BLAS thread per job, and the tracking context."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .io import read_json

REPO = Path(__file__).resolve().parents[1]


def interrupt_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM handler: raise KeyboardInterrupt, so that a terminated job (Snakemake cancelled, ``scancel``,
    a SLURM time limit) takes the same path as Ctrl-C and ends its MLflow runs FAILED instead of leaving
    them RUNNING."""
    raise KeyboardInterrupt(f"terminated by signal {signal.Signals(signum).name}")


def handle_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (signals reach only the main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt_on_sigterm)


def canonical(value: Any) -> str:
    """A rule's parameter as canonical JSON (sorted keys): Snakemake compares parameters as text, so the same
    values with the config's keys in another order must give the same text, or every job would rerun."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def param(snakemake: Any, name: str) -> Any:
    """A rule's parameter, decoded when the rule passed it as canonical JSON (``canonical``)."""
    value = getattr(snakemake.params, name)
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value


def start_job(snakemake: Any) -> None:
    """Make SIGTERM interrupt like Ctrl-C, send the job's output to its log file and limit BLAS to the
    job's threads."""
    handle_sigterm()
    if snakemake.log:
        fd = os.open(snakemake.log[0], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(fd, stream.fileno())
        os.close(fd)
        logging.basicConfig(level=logging.INFO, force=True)
        for chatty in ("weasyprint", "fontTools", "matplotlib"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    from threadpoolctl import threadpool_limits

    threadpool_limits(max(1, int(snakemake.threads)))


def tracking_context(config: dict[str, Any], store_json: str | Path) -> dict[str, Any]:
    """Tracking URI, experiment ids, study name and git commit, as the job functions take them."""
    from .tracking import adopt_local_store, git_commit, is_relative_sqlite, resolve_uri  # MLflow: only here

    store = read_json(store_json)
    folder = Path.cwd().resolve()  # Snakemake runs every job in the workflow's folder
    workflow = str(folder)
    uri = resolve_uri(store["uri"], folder)
    if is_relative_sqlite(store["uri"]):  # the folder's own store: artifacts follow the folder when it moves
        adopt_local_store(uri.removeprefix("sqlite:///"), Path(store_json).parent / "artifacts")
    return {
        "uri": uri,
        "experiments": store["experiments"],
        "study": config["study_name"],
        "dataset": config["data"]["name"],
        "git": git_commit(REPO),
        "user": getpass.getuser(),
        "flush_seconds": config["mlflow"]["flush_seconds"],
        "log_models": config["mlflow"]["log_models"],
        "workflow": workflow,
        "workflow_id": hashlib.sha256(workflow.encode()).hexdigest()[:12],  # for filters: no quoting trouble
        "protocol_tags": protocol_tags(config.get("protocol", {})),
    }


def protocol_tags(protocol: dict[str, Any]) -> dict[str, str]:
    """The declared protocol as MLflow tags on every run (tags, not rule parameters: declaring another
    claim does not rerun a training)."""
    return {f"protocol.{key}": ",".join(map(str, value)) if isinstance(value, list) else str(value)
            for key, value in protocol.items() if not isinstance(value, dict)}  # fmt: skip


__all__ = ["handle_sigterm", "protocol_tags", "start_job", "tracking_context"]


def study_done_message(langs: list[str], tracking_uri: str, output_dir: str = ".") -> str:
    """The console's closing lines after a successful run: the report, the MLflow UI and the recogniser,
    with paths relative to the folder Snakemake was started in."""
    here = "" if output_dir in (".", "./") else output_dir.rstrip("/") + "/"
    store = tracking_uri or f"sqlite:///{here}results/mlflow/mlflow.db"
    reports = ", ".join(f"{here}report/lab_report.{lang}.html" for lang in langs)
    gui = ".venv/bin/nnstudy-gui" + (f" --results {here}results" if here else "")
    return "\n".join([
        "nnstudy: the study is done.",
        f"  the lab report:   {reports} (and .pdf, .md beside them)",
        f"  every run:        MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --workers 1 "
        f"--backend-store-uri {store} --host 127.0.0.1 --port 5000",
        f"  the recogniser:   {gui}   (http://127.0.0.1:8050/)",
    ])  # fmt: skip
