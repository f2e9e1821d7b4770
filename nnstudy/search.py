"""Optuna learning-rate searches: shared storage, parallel workers, nested MLflow runs, exported results."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import sqlalchemy.exc
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from .config import Cell
from .io import atomic_write_json, atomic_write_text
from .mnist import load_dataset
from .tracking import RunLogger, kill_stale_runs
from .training import Outcome, TrainSettings, epoch_logger, history_json, run_params, summary_metrics, train_cell

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_storage(spec: str, study_dir: str | Path) -> optuna.storages.BaseStorage:
    """``journal`` (default): a journal file in the study's folder, safe for many processes on one
    machine; ``journal:/path/file.journal``: one journal file that several workflows (or machines on a
    shared file system) share.  Anything else is an SQLAlchemy URL (e.g. ``postgresql://...``)."""
    if spec == "journal" or spec.startswith("journal:"):
        path = Path(study_dir) / "optuna.journal" if spec == "journal" else Path(spec.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return open_rdb_storage(spec)


def open_rdb_storage(url: str, attempts: int = 5) -> RDBStorage:
    """An RDB storage with heartbeats.  Two workflows that reach a new database at the same moment
    both try to create Optuna's tables, and one loses the race (e.g. PostgreSQL's duplicate-type
    error); the loser simply tries again and finds the tables."""
    for attempt in range(1, attempts + 1):
        try:
            return RDBStorage(url, heartbeat_interval=60, grace_period=180)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def storage_study_name(study_name: str, study: str) -> str:
    """The name inside the storage; prefixed so that one RDB can hold several studies' searches."""
    return f"{study_name}.{study}"


def make_pruner(settings: dict[str, Any]) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=settings["n_startup_trials"], n_warmup_steps=settings["n_warmup_steps"]
    )


def create_study(storage, name: str, seed: int, pruner_settings: dict[str, Any], worker: int = 0) -> optuna.Study:
    """Create or load the study (``load_if_exists``), with a TPE sampler seeded per worker."""
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + 1000 * worker, n_startup_trials=5),
        pruner=make_pruner(pruner_settings),
    )


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def fail_stale_trials(study: optuna.Study, owner: str) -> list[int]:
    """Trials this worker slot (``owner``: workflow folder and worker index) left RUNNING when it was
    killed become FAIL; returns their numbers.  Other workflows' live trials are left alone."""
    stale = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.user_attrs.get("owner") == owner
    ]
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return [t.number for t in stale]


def run_worker(
    *,
    study: str,
    worker: int,
    n_trials: int,
    cell: Cell,
    lr_range: tuple[float, float],
    settings: TrainSettings,
    dataset_path: str | Path,
    search_config: dict[str, Any],
    setup: dict[str, Any],
    tracking: dict[str, Any],
    out_path: str | Path,
) -> dict[str, Any]:
    """Run trials on the shared study until it holds ``n_trials`` finished (complete or pruned) ones."""
    storage = open_storage(search_config["storage"], Path(setup["study_dir"]))
    opt_study = create_study(storage, setup["storage_name"], search_config["seed"], search_config["pruner"], worker)
    owner = f"{tracking['workflow']}#worker{worker}"  # one live process per slot: Snakemake runs a job once
    killed = fail_stale_trials(opt_study, owner)
    data = load_dataset(dataset_path, settings.dtype)
    client = MlflowClient(tracking["uri"])
    experiment = tracking["experiments"]["lr-search"]
    kill_stale_runs(client, experiment, {"study": tracking["study"], "search": study, "owner": owner})
    mine: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", lr_range[0], lr_range[1], log=True)
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("owner", owner)
        mine.append(trial.number)
        tags = {"study": tracking["study"], "search": study, "worker": worker, "owner": owner, "trial": trial.number}
        logger = RunLogger(
            client,
            experiment,
            run_name=f"{study}-trial{trial.number:03d}",
            tags={**tags, "cell": cell.name, "optimizer": cell.optimizer, "status": "running"},
            parent_run_id=setup["parent_run_id"],
            flush_seconds=tracking["flush_seconds"],
        )
        logger.log_params({**run_params(cell, lr, settings, trial.number, data["digest"], tracking["git"])})

        epochs: list[dict[str, Any]] = []

        def report(record: dict[str, Any]) -> None:
            epochs.append(record)
            trial.report(record["val_acc"], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

        def finish(status: RunStatus, tag: str, outcome: Outcome | None = None, metrics=None) -> None:
            """End the run with the trial's history (and checkpoint, when it trained to the end) as artifacts."""
            with tempfile.TemporaryDirectory(prefix="nnstudy-trial-") as folder:
                history = history_json(outcome.history) if outcome else {"epochs": epochs}
                atomic_write_json(Path(folder) / "history.json", history)
                if outcome is not None:
                    outcome.net.save(Path(folder) / "model.npz", extra={"status": outcome.status, "lr": lr})
                logger.finish(RunStatus.to_string(status), metrics=metrics, tags={"status": tag}, artifact_dir=folder)

        try:
            outcome = train_cell(cell, lr, data, settings, seed=trial.number, callback=epoch_logger(logger, report))
        except optuna.TrialPruned:
            finish(RunStatus.KILLED, "pruned")
            raise
        except BaseException:
            logger.finish(RunStatus.to_string(RunStatus.FAILED), tags={"status": "failed"})
            raise
        metrics = summary_metrics(outcome, None)
        if outcome.status == "diverged":
            trial.set_user_attr("status", "diverged")
            trial.report(0.0, len(outcome.history.epoch) + 1)
            finish(RunStatus.FAILED, "diverged", outcome, metrics)
            raise optuna.TrialPruned(outcome.message)
        trial.set_user_attr("status", "ok")
        trial.set_user_attr("epochs_to_best", outcome.history.best_epoch)
        finish(RunStatus.FINISHED, "ok", outcome, metrics)
        return outcome.history.best_val_acc

    remaining = n_trials - count_finished(opt_study)
    if remaining > 0:
        opt_study.optimize(
            objective,
            n_trials=remaining,
            callbacks=[MaxTrialsCallback(n_trials, states=FINISHED)],
            gc_after_trial=False,
        )
    summary = {"study": study, "worker": worker, "trials": mine, "failed_stale_trials": killed}
    atomic_write_json(out_path, summary)
    return summary


def setup_search(
    *,
    study: str,
    cell: Cell,
    search_config: dict[str, Any],
    tracking: dict[str, Any],
    study_dir: str | Path,
    out_path: str | Path,
) -> dict[str, Any]:
    """Create the Optuna study once, and the MLflow parent run its trials nest under."""
    name = storage_study_name(tracking["study"], study)
    create_study(
        open_storage(search_config["storage"], study_dir), name, search_config["seed"], search_config["pruner"]
    )
    client = MlflowClient(tracking["uri"])
    experiment = tracking["experiments"]["lr-search"]
    tags = {"study": tracking["study"], "search": study, "role": "parent"}
    kill_stale_runs(client, experiment, tags)
    parent = client.create_run(
        experiment, run_name=study, tags={**tags, "cell": cell.name, "optimizer": cell.optimizer}
    ).info.run_id
    client.log_param(parent, "n_trials", search_config["n_trials"])
    client.log_param(parent, "storage", "journal" if search_config["storage"] == "journal" else "rdb")
    info = {"study": study, "storage_name": name, "study_dir": str(Path(study_dir).resolve()), "parent_run_id": parent}
    atomic_write_json(out_path, info)
    return info


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, lr, status, duration and the best value so far."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "lr": t.params.get("lr"),
                "status": t.user_attrs.get("status", t.state.name.lower()),
                "worker": t.user_attrs.get("worker"),
                "last_epoch": t.last_step,
                "duration_s": t.duration.total_seconds() if t.duration else None,
                "datetime_start": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
                "datetime_complete": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
            }
        )
    frame = pd.DataFrame(rows).sort_values("number").reset_index(drop=True)
    frame["best_so_far"] = frame["value"].where(frame["state"] == "COMPLETE").cummax()
    return frame


def export_search(
    *,
    setup: dict[str, Any],
    search_config: dict[str, Any],
    fallback_lr: float | None,
    tracking: dict[str, Any],
    best_path: str | Path,
    trials_path: str | Path,
) -> dict[str, Any]:
    """Write the best learning rate and the trial table; close the parent MLflow run."""
    storage = open_storage(search_config["storage"], setup["study_dir"])
    opt_study = optuna.load_study(study_name=setup["storage_name"], storage=storage)
    frame = trials_frame(opt_study)
    complete = frame[frame["state"] == "COMPLETE"]
    best: dict[str, Any] = {
        "study": setup["study"],
        "n_trials": int(len(frame)),
        "n_complete": int(len(complete)),
        "n_pruned": int((frame["state"] == "PRUNED").sum()),
        "n_failed": int((frame["state"] == "FAIL").sum()),
        "n_diverged": int((frame["status"] == "diverged").sum()),
    }
    if len(complete):
        top = opt_study.best_trial
        best.update(lr=top.params["lr"], best_val_acc=top.value, best_trial=top.number, source="search")
    else:
        best.update(lr=fallback_lr, best_val_acc=None, best_trial=None, source="fallback (no completed trial)")
    atomic_write_text(trials_path, frame.to_csv(index=False))
    atomic_write_json(best_path, best)
    client = MlflowClient(tracking["uri"])
    run = setup["parent_run_id"]
    metrics = {k: float(v) for k, v in best.items() if (k.startswith("n_") or k == "best_val_acc") and v is not None}
    if best["lr"] is not None and math.isfinite(best["lr"]):
        metrics["best_lr"] = float(best["lr"])
    for key, value in metrics.items():
        client.log_metric(run, key, value)
    client.log_artifact(run, str(trials_path))
    client.log_artifact(run, str(best_path))
    client.set_terminated(run, RunStatus.to_string(RunStatus.FINISHED))
    return best
