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

from .io import read_json, read_regular_bytes

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
        # each line with its time: a log read later, or beside another, says when each epoch ended
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            force=True)  # fmt: skip
        for chatty in ("weasyprint", "fontTools", "matplotlib"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
        # a log file is no terminal: MLflow's progress bars would write carriage returns and block characters
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from threadpoolctl import threadpool_limits

    threadpool_limits(max(1, int(snakemake.threads)))


def explain_store_faults(db: str) -> None:
    """Check the local store now (``check_local_store``), and should it fail later in this job, end the job's
    traceback with the store's file, the fault and the repair (MLflow's errors name neither)."""
    from .tracking import check_local_store, store_fault_message

    check_local_store(db)
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        previous(kind, value, traceback)
        message = store_fault_message(db, str(value))
        if message:
            print(f"nnstudy: {message}", file=sys.stderr)

    sys.excepthook = hook


def tracking_context(config: dict[str, Any], store_json: str | Path) -> dict[str, Any]:
    """Tracking URI, experiment ids, study name and git commit, as the job functions take them."""
    from .tracking import adopt_local_store, bound_http_requests, git_commit, is_relative_sqlite, resolve_uri

    store = read_json(store_json)
    folder = Path.cwd().resolve()  # Snakemake runs every job in the workflow's folder
    workflow = str(folder)
    uri = resolve_uri(store["uri"], folder)
    settings = config["mlflow"]
    bound_http_requests(uri, settings.get("http_timeout_s", 15), settings.get("http_retries", 2))
    if uri.startswith("sqlite:///"):
        explain_store_faults(uri.removeprefix("sqlite:///"))
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
        "workflow_id": workflow_id(folder),  # the folder's own: moving or copying it keeps its runs its own
        "protocol_tags": protocol_tags(config.get("protocol", {})),
    }


WORKFLOW_ID_FILE = Path("results") / "workflow-id"


def workflow_id(folder: str | Path) -> str:
    """The study folder's identity, which tags its MLflow runs and owns its Optuna trials: 12 hex digits in
    ``results/workflow-id``, written once (the digest of the folder's path when it is first needed, the
    value older folders were tagged with) and kept when the folder is moved or copied."""
    path = Path(folder) / WORKFLOW_ID_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        value = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:12]
        pending = path.with_name(f".{path.name}.{os.getpid()}")
        pending.write_text(value + "\n")
        try:
            os.link(pending, path)  # never replaces one a concurrent job wrote first
        except FileExistsError:
            pass
        finally:
            pending.unlink()
    text = read_regular_bytes(path).decode("utf-8", "replace").strip()
    if not (len(text) == 12 and all(c in "0123456789abcdef" for c in text)):
        raise ValueError(
            f"{path} should hold the study folder's identity, 12 hexadecimal digits, but holds {text[:40]!r}. "
            f"Put back the file from a backup or a copy of this folder; deleting it gives the folder a new "
            f"identity, and its earlier MLflow runs and Optuna trials are then no longer recognised as its own."
        )
    return text


def protocol_tags(protocol: dict[str, Any]) -> dict[str, str]:
    """The declared protocol as MLflow tags on every run (tags, not rule parameters: declaring another
    claim does not rerun a training)."""
    return {f"protocol.{key}": ",".join(map(str, value)) if isinstance(value, list) else str(value)
            for key, value in protocol.items() if not isinstance(value, dict)}  # fmt: skip


__all__ = ["handle_sigterm", "protocol_tags", "start_job", "tracking_context"]


#: MLflow 3's UI opens an experiment on its GenAI overview unless the browser chose "Model training" once
#: (kept in its local storage); this query names the mode in the link itself
RUNS_VIEW = "runs?workflowType=machine_learning"


def study_done_message(langs: list[str], tracking_uri: str, output_dir: str = ".") -> str:
    """The console's closing lines after a successful run: the report, the MLflow UI with the grid's runs
    view as a link, and the recogniser, with paths relative to the folder Snakemake was started in."""
    here = "" if output_dir in (".", "./") else output_dir.rstrip("/") + "/"
    store = tracking_uri or f"sqlite:///{here}results/mlflow/mlflow.db"
    reports = ", ".join(f"{here}report/lab_report.{lang}.html" for lang in langs)
    gui = ".venv/bin/nnstudy-gui" + (f" --results {here}results" if here else "")
    # Snakemake's process is in the study's folder by now (common.smk enters output_dir)
    experiments = Path("results") / "mlflow" / "store.json"
    grid = read_json(experiments)["experiments"]["grid"] if experiments.is_file() else None
    runs = f"http://127.0.0.1:5000/#/experiments/{grid}/{RUNS_VIEW}" if grid else "http://127.0.0.1:5000/"
    return "\n".join([
        "nnstudy: the study is done.",
        f"  the lab report:   {reports} (and .pdf, .md beside them)",
        f"  every run:        MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --workers 1 "
        f"--backend-store-uri {store} --host 127.0.0.1 --port 5000",
        f"                    then {runs}",
        f"  the recogniser:   {gui}   (http://127.0.0.1:8050/)",
    ])  # fmt: skip
