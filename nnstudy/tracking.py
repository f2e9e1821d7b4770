"""MLflow glue: one store set up once, runs with batched logging, and clean-up of runs a kill left RUNNING."""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import subprocess
import time
import warnings
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

EXPERIMENTS = ("grid", "lr-search")
MAX_PARAM_CHARS = 6000
#: seconds a tracking server gets to answer the one check at store setup (MLflow's own default is
#: 120 s per request, retried 7 times with back-off: about 4 minutes before a dead server is reported)
SERVER_CHECK_TIMEOUT_S = 10


class TrackingServerError(RuntimeError):
    """The configured tracking server cannot be used; the message names its URI and what to do."""


def default_tracking_uri(results_dir: str | Path) -> str:
    """The local store: an SQLite database under ``results/mlflow``, named relative to the workflow folder
    (``sqlite:///results/mlflow/mlflow.db``) so that a moved or copied folder uses its own store."""
    return f"sqlite:///{Path(results_dir) / 'mlflow' / 'mlflow.db'}"


def resolve_uri(uri: str, folder: str | Path) -> str:
    """A relative SQLite URI (three slashes and a relative path) made absolute against ``folder``; any other
    URI as it is."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(Path(folder) / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def is_relative_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///") and resolve_uri(uri, "/") != uri


def study_store(workdir: str | Path) -> tuple[str, dict[str, str]]:
    """The tracking URI (absolute) and experiment ids of the study in ``workdir``, from its
    ``results/mlflow/store.json``."""
    from .io import read_json

    store = read_json(Path(workdir) / "results" / "mlflow" / "store.json")
    return resolve_uri(store["uri"], workdir), store["experiments"]


#: MLflow keeps absolute artifact locations in its database (it resolves relative ones when it creates an
#: experiment); these are the columns that hold them
ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"), ("model_versions", "storage_location"))  # fmt: skip


def adopt_local_store(db: str | Path, artifact_dir: str | Path) -> str | None:
    """Point a local store's artifact locations at ``artifact_dir`` when the store was made in another
    folder (the study folder was moved or copied), so that a copy never writes into the original's
    artifacts. Returns the old artifact root when it moved something, else None.

    The study's experiments were created with artifact locations ``<artifact_dir>/<kind>``; the old root is
    read from them, and every location under it is rewritten, under the store's set-up lock.
    """
    db = Path(db)
    new_root = Path(artifact_dir).resolve().as_uri()
    with exclusive_lock(db.with_name(db.name + ".setup-lock")), closing(sqlite3.connect(db, timeout=60)) as connection:
        old_roots = set()
        for (location,) in connection.execute("SELECT artifact_location FROM experiments"):
            for kind in EXPERIMENTS:
                if location and location.endswith(f"/{kind}") and location.startswith("file://"):
                    old_roots.add(location.removesuffix(f"/{kind}"))
        old_roots.discard(new_root)
        if not old_roots:
            return None
        if len(old_roots) > 1:
            raise RuntimeError(f"the MLflow store {db} names artifact folders in several places: {sorted(old_roots)}")
        [old_root] = old_roots
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in ARTIFACT_COLUMNS:
            if table in tables:
                connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                    (new_root + "/", len(old_root) + 2, len(old_root) + 1, old_root + "/"),
                )
                connection.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new_root, old_root))
        connection.commit()
        return old_root


def tracking_uri(configured: str, results_dir: str | Path) -> str:
    """The configured URI, or the local default when it is empty."""
    return configured or default_tracking_uri(results_dir)


def experiment_name(prefix: str, kind: str) -> str:
    return f"{prefix}/{kind}"


def check_server(uri: str, timeout: float = SERVER_CHECK_TIMEOUT_S) -> None:
    """Ask a tracking server (an http(s) URI) for one experiment, once, with MLflow's retries off.

    Raises TrackingServerError naming the URI and what to do when it does not answer in
    ``timeout`` seconds or answers with an error; other URIs are left alone.
    """
    if not uri.startswith(("http://", "https://")):
        return
    seconds = str(max(1, round(timeout)))
    settings = {MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0", MLFLOW_HTTP_REQUEST_TIMEOUT.name: seconds}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as exc:
        raise TrackingServerError(
            f"the MLflow tracking server {uri} (mlflow.tracking_uri) cannot be used: asked once, with a "
            f"{timeout:g} s timeout (mlflow.server_check_timeout_s), it gave: {exc.message}\n"
            f"Start the server (for example `mlflow server --host 127.0.0.1 --port 5000`), or set "
            f"mlflow.tracking_uri to a server that runs, or leave it empty for the local SQLite store "
            f"under results/mlflow; then run the workflow again."
        ) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class StoreError(RuntimeError):
    """The local MLflow store cannot be used; the message names the file, the fault and the repair."""


#: SQLite's messages for a store it cannot use, and what to do about each
STORE_FAULTS = {
    "file is not a database": "damaged",
    "database disk image is malformed": "damaged",
    "attempt to write a readonly database": "read-only",
    "unable to open database file": "unopenable",
}


def store_fault_message(db: str | Path, error: str) -> str | None:
    """What to tell a user whose job met ``error`` on the local store ``db`` (None: not a store fault)."""
    fault = next((kind for text, kind in STORE_FAULTS.items() if text in error), None)
    if fault is None:
        return None
    repair = {
        "damaged": "Put back the file from a backup, or run the study afresh in an empty folder. Deleting "
                   "results/mlflow makes an empty store and reruns every job that logs to MLflow, but the "
                   "searches keep their finished trials, whose runs are then gone (the run warns at its start); "
                   "delete results/search/ too to train and log them again.",
        "read-only": f"Make it and its folder writable (chmod u+w, or chattr -i for an immutable file): SQLite "
                     f"writes {Path(db).name}-wal and -shm beside it.",
        "unopenable": "Check that the folder exists and is writable, and that the path is under SQLite's limit "
                      "of 512 bytes (a shorter folder path).",
    }[fault]  # fmt: skip
    return f"the MLflow store {db} cannot be used ({fault}: {error.strip().splitlines()[0][:200]}). {repair}"


def check_local_store(db: str | Path) -> None:
    """Open the local store, read its tables and take its write lock for an instant, so that a damaged,
    read-only or unopenable store stops a job at once with StoreError (file, fault, repair), not with a bare
    SQLite error from inside MLflow. A missing store is left to MLflow to create."""
    if not Path(db).exists():
        return
    try:
        with closing(sqlite3.connect(db, timeout=60)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                if table in ("experiments", "runs"):
                    connection.execute(f"SELECT count(*) FROM {table}").fetchone()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        raise StoreError(store_fault_message(db, str(exc)) or f"the MLflow store {db} cannot be used: {exc}") from None


def bound_http_requests(uri: str, timeout_s: float, retries: int) -> dict[str, str]:
    """For a tracking server: MLflow's per-request timeout and retries for this job (MLflow's defaults, 120 s
    and 7 retries with back-off, take minutes to notice a server that died mid-study), unless the user set
    them in the environment; returns what was set. Other URIs: nothing."""
    if not uri.startswith(("http://", "https://")):
        return {}
    settings = {MLFLOW_HTTP_REQUEST_TIMEOUT.name: str(max(1, round(timeout_s))),
                MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: str(int(retries)),
                MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name: "1"}  # fmt: skip
    chosen = {name: value for name, value in settings.items() if name not in os.environ}
    os.environ.update(chosen)
    return chosen


def setup_store(
    uri: str, prefix: str, artifact_dir: str | Path, check_timeout: float = SERVER_CHECK_TIMEOUT_S
) -> dict[str, str]:
    """Create (or find) the study's experiments; returns kind -> experiment id.

    Run once by one job before any other job touches the store, so no two
    processes race to create the database or an experiment.  A tracking server
    is checked first (``check_server``), so that a dead one is reported at once.
    """
    check_server(uri, check_timeout)
    db = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        check_local_store(db)
    with exclusive_lock(db.with_name(db.name + ".setup-lock") if db else None):  # one creator per store
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # creates the tables of a new store
        if db is not None:
            # write-ahead logging: concurrent jobs read while one writes, and commits are cheaper
            with sqlite3.connect(db, timeout=60) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
        ids = {}
        for kind in EXPERIMENTS:
            name = experiment_name(prefix, kind)
            found = client.get_experiment_by_name(name)
            if found is None:
                # a local store keeps artifacts under results/; a tracking server decides for itself
                remote = uri.startswith(("http://", "https://", "databricks"))
                location = None if remote else (Path(artifact_dir).resolve() / kind).as_uri()
                try:
                    ids[kind] = client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
                except MlflowException:  # created meanwhile by another process (e.g. on a server)
                    ids[kind] = client.get_experiment_by_name(name).experiment_id
            else:
                ids[kind] = found.experiment_id
                for key, value in EXPERIMENT_TAGS.items():
                    client.set_experiment_tag(ids[kind], key, value)
    return ids


@contextmanager
def exclusive_lock(path: Path | None):
    """An advisory ``flock`` on ``path`` for the duration of the block (nothing when path is None)."""
    if path is None:
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: the generated lab report is an output of the study, not a change to its code
GENERATED = (":(exclude)report/lab_report.*", ":(exclude)report/figures")


def git_commit(folder: str | Path) -> str:
    """The checked-out commit (``-dirty`` when tracked code differs from it), or ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no", "--", ".", *GENERATED],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _clean(value: float) -> float:
    return float(value) if math.isfinite(value) else float("nan")


class RunLogger:
    """One MLflow run whose metrics are buffered and sent in batches.

    Per-epoch metrics are held until ``flush_seconds`` have passed since the last
    send (and at the end), so a run costs a handful of store calls however many
    epochs it has.
    """

    def __init__(
        self,
        client: MlflowClient,
        experiment_id: str,
        run_name: str,
        tags: dict[str, Any],
        parent_run_id: str | None = None,
        flush_seconds: float = 10.0,
    ) -> None:
        self.client = client
        self.seconds = 0.0  # time spent talking to the tracking store
        start = time.perf_counter()
        all_tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
        self.flush_seconds = flush_seconds
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self.seconds += time.perf_counter() - start

    def log_params(self, params: dict[str, Any]) -> None:
        start = time.perf_counter()
        items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
        self.client.log_batch(self.run_id, params=items)
        self.seconds += time.perf_counter() - start

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        self._pending += [Metric(k, _clean(v), now, step or 0) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        start = time.perf_counter()
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []
        self._last_flush = time.monotonic()
        self.seconds += time.perf_counter() - start

    def finish(
        self,
        status: str,
        metrics: dict[str, float] | None = None,
        tags: dict[str, Any] | None = None,
        artifact_dir: str | Path | None = None,
    ) -> None:
        """Send what is buffered with the final metrics, the files of ``artifact_dir``, then the final tags,
        and end the run with ``status``.  The status tag and the end come only after the artifacts are in
        place: when anything before fails (say an OSError while copying the artifacts), the run ends FAILED
        (tags ``status=failed`` and ``error``) and the error propagates."""
        start = time.perf_counter()
        now = int(time.time() * 1000)
        self._pending += [Metric(k, _clean(v), now, 0) for k, v in (metrics or {}).items()]
        try:
            if self._pending:
                self.client.log_batch(self.run_id, metrics=self._pending)
                self._pending = []
            if artifact_dir is not None:
                self.client.log_artifacts(self.run_id, str(artifact_dir))
            if tags:
                self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
            self.client.set_terminated(self.run_id, status)
        except BaseException as exc:
            end_failed(self.client, self.run_id, exc)
            raise
        finally:
            self.seconds += time.perf_counter() - start


def end_failed(client: MlflowClient, run_id: str, exc: BaseException) -> None:
    """End a run FAILED, with ``status=failed`` and the error as tags; its own errors are swallowed, so that
    the caller re-raises the first one."""
    error = "interrupted (KeyboardInterrupt or SIGTERM)" if isinstance(exc, KeyboardInterrupt) else repr(exc)
    with suppress(Exception):
        client.log_batch(run_id, tags=[RunTag("status", "failed"), RunTag("error", error[:MAX_PARAM_CHARS])])
    with suppress(Exception):
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))


def quoted(value: Any) -> str:
    """A value as an MLflow filter-string literal: in single quotes, or in double quotes when it holds a
    single quote (MLflow's filter syntax has no escape character, so a value with both cannot be matched)."""
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ValueError(f"cannot search MLflow for a tag value holding both kinds of quote: {text!r}")


def tag_filter(tags: dict[str, Any]) -> str:
    """``tags.a = 'x' and tags.b = "o'brien"``: every tag equal to its value, each value quoted safely."""
    return " and ".join(f"tags.`{key}` = {quoted(value)}" for key, value in tags.items())


def kill_stale_runs(
    client: MlflowClient, experiment_id: str, tags: dict[str, Any], supersede: bool = False
) -> list[str]:
    """Mark RUNNING runs that carry all of ``tags`` as KILLED (left so by a killed job); returns their ids.

    With ``supersede``, every earlier run with these tags (a job that is being redone) is also tagged
    ``superseded=true``: kept for comparison, but not the run behind the current result.
    """
    runs = client.search_runs([experiment_id], filter_string=tag_filter(tags), max_results=10_000)
    killed = []
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "status", "killed")
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            killed.append(run.info.run_id)
        if supersede:
            client.set_tag(run.info.run_id, "superseded", "true")
    return killed


def kill_runs(client: MlflowClient, run_ids: list[str]) -> None:
    """Mark these runs KILLED whatever their status: the search trials they record were failed on resume.
    A kill can land after a trial's run has ended and before Optuna was told the trial's result; the trial
    then fails, and its run must say so too (Optuna and MLflow agree on every trial)."""
    for run_id in run_ids:
        client.set_tag(run_id, "status", "killed")
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


#: the experiment page opens on the runs view, not on MLflow 3's GenAI traces page
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
PYFUNC_CODE = Path(__file__).parent / "mlflow_models" / "nnlib_pyfunc.py"


def standard_tags(tracking: dict[str, Any], source: str, note: str) -> dict[str, str]:
    """MLflow's system tags, so the runs table shows source, commit, user and a description."""
    commit = tracking["git"]
    return {
        "mlflow.source.git.commit": commit.removesuffix("-dirty"),
        "mlflow.source.type": "JOB",
        "mlflow.source.name": source,
        "mlflow.user": tracking["user"],
        "mlflow.note.content": note,
        "git_dirty": str(commit.endswith("-dirty")).lower(),
        **tracking.get("protocol_tags", {}),
    }


def log_input_once(dataset, attempts: int = 5) -> None:
    """``mlflow.log_input`` for the active run.  MLflow creates a dataset row on first use without a lock,
    so two jobs logging the same dataset at once can lose a race on its unique key; the loser finds the
    row on its next try."""
    import mlflow

    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context="training")
            return
        except MlflowException as exc:
            if attempt == attempts or "UNIQUE constraint" not in str(exc) and "duplicate key" not in str(exc):
                raise
            time.sleep(0.2 * attempt)


def log_to_run(
    uri: str,
    run_id: str,
    *,
    dataset: dict[str, str] | None = None,
    checkpoint: str | Path | None = None,
    model_name: str = "model",
    model_tags: dict[str, str] | None = None,
) -> str | None:
    """Record on a run the dataset it trained on (``log_input`` with its digest) and/or log an nnlib
    checkpoint as an MLflow pyfunc model (from code: nothing pickled; its input is described in
    ``nnlib_pyfunc``); returns the logged model's id (None without a checkpoint).  An ended run keeps its status; a
    running one is left RUNNING for its caller to end with its own status (after its artifacts), unless this
    fails: then it ends FAILED (tag ``status=failed``) and the error propagates."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    mlflow.set_tracking_uri(uri)
    before = MlflowClient(uri).get_run(run_id).info
    status = before.status
    mlflow.start_run(run_id=run_id)
    info = None
    try:
        warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")  # type-hint and source advice
        if dataset is not None:
            source = resolve_dataset_source(dataset["source"])
            log_input_once(MetaDataset(source, name=dataset["name"], digest=dataset["digest"]))
        if checkpoint is not None:
            # no signature: MLflow would enforce its one dtype before predict, refusing uint8 pixels and
            # DataFrames that the model's own check (nnlib_pyfunc.as_pixels) takes and explains
            info = mlflow.pyfunc.log_model(
                name=model_name,
                python_model=str(PYFUNC_CODE),
                artifacts={"checkpoint": str(checkpoint)},
                pip_requirements=["numpy", "mlflow"],
                code_paths=[str(Path(__file__).resolve().parents[1] / "nnlib")],
                tags=model_tags,  # over MLflow's own, which name Snakemake's temporary copy of the script
            )
    except BaseException as exc:
        with suppress(Exception):
            mlflow.end_run(status=status)  # leaves the fluent run; an ended run keeps its status
        if status == "RUNNING":
            end_failed(MlflowClient(uri), run_id, exc)
        raise
    mlflow.end_run(status=status)  # RUNNING stays RUNNING: its caller ends it, after its artifacts
    if status != "RUNNING" and before.end_time:  # reopening an ended run must not change its duration
        MlflowClient(uri).set_terminated(run_id, status=status, end_time=before.end_time)
    return None if info is None else info.model_id


def describe_version(uri: str, name: str, version: str, best: Any, study: str) -> None:
    """What a registered version is, for a reader of MLflow's model registry: a description, tags (cell,
    seed, its validation and test accuracy, the commit, the study) and the aliases ``champion`` and ``best``
    on the newest version."""
    client = MlflowClient(uri)
    val = 100 * float(best["best_val_acc"])
    text = (f"The {'CNN' if best['arch'] == 'cnn' else 'BP network'} of study {study} with the highest validation "
            f"accuracy ({val:.2f} %): cell {best['cell']}, seed {best['seed']}. Chosen on validation accuracy, "
            "never on test accuracy. Input: images of 784 pixels a row (or 28 x 28), float in [0, 1] or uint8 "
            "in [0, 255], as a NumPy array, DataFrame or list; output: the class probabilities, shape "
            "(n, 10).")  # fmt: skip
    client.update_model_version(name, version, description=text)
    tags = {"study": study, "cell": best["cell"], "seed": str(best["seed"]), "best_val_acc": f"{val:.2f}",
            "chosen_on": "validation accuracy"}  # fmt: skip
    if "test_acc" in best and best["test_acc"] == best["test_acc"]:  # NaN for a run that failed
        tags["test_acc"] = f"{100 * float(best['test_acc']):.2f}"
    if "git_commit" in best:
        tags["git_commit"] = str(best["git_commit"])
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_registered_model(
        name, description=f"The best {best['arch'].upper()} of study {study} by validation accuracy."
    )
    for alias in ("champion", "best"):
        client.set_registered_model_alias(name, alias, version)


def register_best_models(
    runs_csv: str | Path, dataset_path: str | Path, uri: str, study: str, out_path: str | Path, enabled: bool = True
) -> dict[str, Any]:
    """Log the best MLP and the best CNN of the grid (by best validation accuracy, never by test accuracy) as
    MLflow pyfunc models on their own runs and register them as ``<study>-best-mlp`` / ``<study>-best-cnn``;
    writes what was registered to ``out_path``.  Every grid run keeps its checkpoint as an artifact; only
    these two are made MLflow models (about 1.5 s each, most of it MLflow's model packaging).  Not
    ``enabled`` (``mlflow.log_models: false``): registers nothing and writes an empty record."""
    import mlflow
    import numpy as np
    import pandas as pd

    from .io import atomic_write_json

    mlflow.set_tracking_uri(uri)
    runs = pd.read_csv(runs_csv)
    ok = runs[runs["status"] == "ok"] if enabled else runs.iloc[:0]
    registered: dict[str, Any] = {}
    for arch, group in ok.groupby("arch"):
        best = group.sort_values(["best_val_acc", "cell", "seed"], ascending=[False, True, True]).iloc[0]
        checkpoint = Path("results/grid") / best["cell"] / f"seed{best['seed']}" / "model.npz"
        source = {"mlflow.source.name": "workflow/rules/aggregate.smk:register_models", "mlflow.source.type": "JOB",
                  "mlflow.source.git.commit": str(best["git_commit"]).removesuffix("-dirty")}  # fmt: skip
        model_id = log_to_run(uri, best["mlflow_run_id"], checkpoint=checkpoint,
                              model_name=f"{best['cell']}-seed{best['seed']}", model_tags=source)  # fmt: skip
        name = f"{study}-best-{arch}"
        version = mlflow.register_model(f"models:/{model_id}", name)
        describe_version(uri, name, version.version, best, study)
        with np.load(dataset_path) as data:  # the split it learnt from, as the run's logged dataset names it
            digest = str(data["digest"])[:16]
        MlflowClient(uri).set_model_version_tag(name, version.version, "training_data", f"{dataset_path} ({digest})")
        registered[str(arch)] = {"name": name, "version": int(version.version), "run_id": best["mlflow_run_id"],
                                 "model_id": model_id, "cell": best["cell"], "seed": int(best["seed"]),
                                 "best_val_acc": float(best["best_val_acc"])}  # fmt: skip
    atomic_write_json(out_path, registered)
    return registered
