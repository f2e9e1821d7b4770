"""Optuna learning-rate searches whose answer depends on the configuration alone.

A study's trials fill numbered slots ``0 .. n_trials-1`` in rounds of ``search.batch_size``.  Round r's
learning rates are proposed by a TPE sampler seeded with (search seed, r) from the trials of rounds
before r only; slot k trains with seed ``trial_seed_base + k`` (apart from the grid's seeds); and the
median pruner compares a trial with the completed trials of earlier rounds only.  Each round is split
into ``workers`` parts, one Snakemake job each, and the DAG makes round r wait for round r-1.  So the
chosen learning rate is the same with any ``--cores``, on any executor, and after a kill and resume at
any point: a slot whose trial was killed is trained again with the same learning rate and seed.
"""

from __future__ import annotations

import datetime
import logging
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc
from mlflow.entities import RunStatus, ViewType
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from .config import Cell, part_slots, round_slots
from .io import atomic_write_json, atomic_write_text
from .journal import JournalFlock, open_journal  # noqa: F401 (JournalFlock: re-exported)
from .mnist import load_dataset
from .tracking import RunLogger, kill_runs, kill_stale_runs, standard_tags, tag_filter
from .training import Outcome, TrainSettings, epoch_logger, history_json, run_params, summary_metrics, train_cell

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
METRIC = "best_val_acc"
log = logging.getLogger("nnstudy.search")


def open_storage(spec: str, study_dir: str | Path) -> optuna.storages.BaseStorage:
    """``journal`` (default): one journal file for all of a workflow's studies, ``results/search/optuna.journal``
    (so one ``optuna-dashboard`` shows them all), safe for many processes on one machine;
    ``journal:/path/file.journal``: one journal file that several workflows (or machines on a shared file
    system) share.  Anything else is an SQLAlchemy URL (e.g. ``postgresql://...``)."""
    if spec == "journal" or spec.startswith("journal:"):
        path = Path(study_dir).parent / "optuna.journal" if spec == "journal" else Path(spec.removeprefix("journal:"))
        return open_journal(path)  # flock write lock; a torn last record is cut before any append
    return open_rdb_storage(spec)


def open_rdb_storage(url: str, attempts: int = 5) -> RDBStorage:
    """An RDB storage.  Two workflows that reach a new database at the same moment both try to create
    Optuna's tables, and one loses the race (e.g. PostgreSQL's duplicate-type error); the loser simply
    tries again and finds the tables."""
    for attempt in range(1, attempts + 1):
        try:
            return RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def storage_study_name(study_name: str, study: str) -> str:
    """The name inside the storage; prefixed so that one RDB can hold several studies' searches."""
    return f"{study_name}.{study}"


def lr_distribution(lr_range: tuple[float, float]) -> FloatDistribution:
    return FloatDistribution(float(lr_range[0]), float(lr_range[1]), log=True)


def round_seed(seed: int, round_: int) -> int:
    """The sampler seed of one round, derived from the search seed and the round alone."""
    return int(np.random.SeedSequence([seed, round_]).generate_state(1)[0])


def slot_of(trial: FrozenTrial) -> int | None:
    slot = trial.user_attrs.get("slot")
    return int(slot) if slot is not None else None


def finished_slots(study: optuna.Study) -> dict[int, FrozenTrial]:
    """The trial that holds each finished slot (the lowest-numbered, should two workflows both have run it)."""
    out: dict[int, FrozenTrial] = {}
    for trial in sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number):
        slot = slot_of(trial)
        if slot is not None and slot not in out:
            out[slot] = trial
    return out


def earlier_rounds(study: optuna.Study, first_slot: int) -> list[FrozenTrial]:
    """The finished trials of every slot before ``first_slot``, in slot order; an error if one is missing."""
    done = finished_slots(study)
    missing = [slot for slot in range(first_slot) if slot not in done]
    if missing:
        raise RuntimeError(
            f"study {study.study_name}: slots {missing} of earlier rounds have no finished trial; "
            "run the whole workflow (snakemake --cores N) rather than a single round"
        )
    return [done[slot] for slot in range(first_slot)]


def propose_round(
    history: list[FrozenTrial], n: int, lr_range: tuple[float, float], seed: int, round_: int, n_startup: int
) -> list[float]:
    """``n`` learning rates for one round: TPE (random until ``n_startup`` trials exist; a constant liar
    spreads a round's points) on an in-memory copy of the earlier rounds, seeded by (seed, round)."""
    sampler = optuna.samplers.TPESampler(seed=round_seed(seed, round_), n_startup_trials=n_startup,
                                         constant_liar=True)  # fmt: skip
    scratch = optuna.create_study(direction="maximize", sampler=sampler)
    scratch.add_trials(history)
    distribution = lr_distribution(lr_range)
    return [scratch.ask({"lr": distribution}).params["lr"] for _ in range(n)]


class FrozenReferencePruner:
    """Optuna's median pruner, applied against the completed trials of earlier rounds only (which no
    longer change), so that whether a trial is pruned does not depend on what runs beside it."""

    def __init__(self, settings: dict[str, Any], history: list[FrozenTrial], distribution: FloatDistribution):
        self.pruner = optuna.pruners.MedianPruner(
            n_startup_trials=settings["n_startup_trials"], n_warmup_steps=settings["n_warmup_steps"]
        )
        self.reference = optuna.create_study(direction="maximize")
        self.reference.add_trials([t for t in history if t.state == TrialState.COMPLETE])
        self.distribution = distribution

    def should_prune(self, lr: float, intermediate: dict[int, float]) -> bool:
        current = FrozenTrial(
            number=len(self.reference.trials), state=TrialState.RUNNING, value=None,
            datetime_start=datetime.datetime.now(), datetime_complete=None, params={"lr": lr},
            distributions={"lr": self.distribution}, user_attrs={}, system_attrs={},
            intermediate_values=dict(intermediate), trial_id=-1,
        )  # fmt: skip
        return self.pruner.prune(self.reference, current)


def create_study(storage, name: str) -> optuna.Study:
    """Create or load the study; its objective is named after the metric it maximises."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    if study.metric_names != [METRIC]:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and stable in use here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC])
    return study


def owner_id(workflow_id: str, study: str, round_: int, part: int) -> str:
    """The job that owns a trial: the workflow folder's digest, the study, round and part (Snakemake runs
    a job once at a time, so a RUNNING trial of this owner at the job's start was left by a kill)."""
    return f"{workflow_id}:{study}:r{round_}p{part}"


def fail_stale_trials(study: optuna.Study, slots: list[int], owner: str) -> list[int]:
    """This job's trials left RUNNING by a kill become FAIL (``status=killed``); returns their numbers.
    Another workflow's live trials on the same slots are left alone."""
    stale = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if slot_of(t) in slots and t.user_attrs.get("owner") == owner
    ]  # fmt: skip
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return [t.number for t in stale]


def in_claim_order(study: optuna.Study, slots: list[int]) -> list[int]:
    """Slots nobody is running first, then those another workflow sharing the study is running: by the
    time we reach them they are usually done; if not, we run them too (same learning rate and seed, so
    the same result: the lower-numbered trial holds the slot)."""
    running = {slot_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return [s for s in slots if s not in running] + [s for s in slots if s in running]


def run_round_part(
    *,
    study: str,
    round_: int,
    part: int,
    cell: Cell,
    settings: TrainSettings,
    dataset_path: str | Path,
    search_config: dict[str, Any],
    setup: dict[str, Any],
    tracking: dict[str, Any],
    out_path: str | Path,
) -> dict[str, Any]:
    """Train this part's slots of one round (skipping slots already finished) and write its summary."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per in-memory scratch study
    storage = open_storage(search_config["storage"], Path(setup["study_dir"]))
    opt_study = create_study(storage, setup["storage_name"])
    slots = round_slots(search_config, round_)
    mine = part_slots(search_config, round_, part)
    owner = owner_id(tracking["workflow_id"], study, round_, part)
    killed = fail_stale_trials(opt_study, mine, owner)
    lr_range = tuple(search_config["lr_range"][cell.optimizer])
    history = earlier_rounds(opt_study, slots.start)
    n_startup = min(search_config["batch_size"], search_config["n_trials"])
    lrs = dict(zip(slots, propose_round(history, len(slots), lr_range, search_config["seed"], round_, n_startup)))
    pruner = FrozenReferencePruner(search_config["pruner"], history, lr_distribution(lr_range))
    client = MlflowClient(tracking["uri"])
    experiment = tracking["experiments"]["lr-search"]
    kill_stale_runs(client, experiment, {"study": tracking["study"], "search": study, "owner": owner})
    kill_runs(client, [t.user_attrs["mlflow_run_id"] for t in opt_study.get_trials(deepcopy=False)
                       if t.number in killed and "mlflow_run_id" in t.user_attrs])  # ended before the kill  # fmt: skip
    data = load_dataset(dataset_path, settings.dtype)
    context = TrialContext(opt_study, storage, cell, settings, data, tracking, setup, study, owner, round_, part,
                           seed_base=int(search_config.get("trial_seed_base", 0)))  # fmt: skip
    trained = []
    for slot in in_claim_order(opt_study, mine):
        if slot not in finished_slots(opt_study):  # another workflow sharing the study may have done it
            trained.append(context.run(slot, lrs[slot], lr_range, pruner))
    summary = {"study": study, "round": round_, "part": part, "slots": mine, "trained": trained,
               "failed_stale_trials": killed, "lrs": {str(s): lrs[s] for s in mine}}  # fmt: skip
    atomic_write_json(out_path, summary)
    return summary


class TrialContext:
    """One slot's trial: its MLflow run (created first, so a trial always names its run), its Optuna
    trial (created with slot, owner and run id in one storage call), training, and the outcome."""

    def __init__(self, study, storage, cell, settings, data, tracking, setup, name, owner, round_, part,
                 seed_base: int = 0) -> None:  # fmt: skip
        self.study, self.storage, self.cell, self.settings, self.data = study, storage, cell, settings, data
        self.tracking, self.setup, self.name, self.owner = tracking, setup, name, owner
        self.round, self.part, self.seed_base = round_, part, seed_base

    def trial_seed(self, slot: int) -> int:
        """The training seed of a slot: apart from the grid's seeds (``search.trial_seed_base`` + slot)."""
        return self.seed_base + slot

    def trial_logger(self, slot: int, lr: float) -> RunLogger:
        """The MLflow run of one trial, nested under the search's parent run."""
        tags = {"study": self.tracking["study"], "search": self.name, "owner": self.owner, "slot": slot,
                "round": self.round, "cell": self.cell.name, "optimizer": self.cell.optimizer,
                "status": "running", **standard_tags(self.tracking, "workflow/rules/search.smk:search_round",
                f"Learning-rate search {self.name}, slot {slot} (round {self.round}): {self.cell.name} at lr {lr:.4g}, "
                f"seed {self.trial_seed(slot)}.")}  # fmt: skip
        return RunLogger(
            MlflowClient(self.tracking["uri"]),
            self.tracking["experiments"]["lr-search"],
            run_name=f"trial {slot:03d} · {self.name}",  # the slot first: MLflow cuts long names at the end
            tags=tags,
            parent_run_id=self.setup["parent_run_id"],
            flush_seconds=self.tracking["flush_seconds"],
        )

    def new_trial(self, slot: int, lr: float, lr_range: tuple[float, float], run_id: str) -> optuna.trial.Trial:
        """The Optuna trial of ``slot`` at ``lr``, created RUNNING with its slot, round, part and MLflow run."""
        template = FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, datetime_start=datetime.datetime.now(),
            datetime_complete=None, params={"lr": lr}, distributions={"lr": lr_distribution(lr_range)},
            user_attrs={"slot": slot, "round": self.round, "part": self.part, "owner": self.owner,
                        "mlflow_run_id": run_id},
            system_attrs={}, intermediate_values={}, trial_id=0,
        )  # fmt: skip
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        return optuna.trial.Trial(self.study, self.storage.create_new_trial(study_id, template_trial=template))

    def run(self, slot: int, lr: float, lr_range: tuple[float, float], pruner: FrozenReferencePruner) -> int:
        logger = self.trial_logger(slot, lr)
        self.lr = lr
        trial = self.new_trial(slot, lr, lr_range, logger.run_id)
        logger.client.set_tag(logger.run_id, "trial", trial.number)
        logger.log_params(run_params(self.cell, lr, self.settings, self.trial_seed(slot), self.data["digest"],
                                     self.tracking["git"]))  # fmt: skip
        intermediate: dict[int, float] = {}
        epochs: list[dict[str, Any]] = []

        def report(record: dict[str, Any]) -> None:
            epochs.append(record)
            intermediate[record["epoch"]] = record["val_acc"]
            trial.report(record["val_acc"], record["epoch"])
            if pruner.should_prune(lr, intermediate):
                raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

        try:
            label = f"{self.name} slot {slot} (trial {trial.number}, lr {lr:.4g})"
            outcome = train_cell(self.cell, lr, self.data, self.settings, seed=self.trial_seed(slot),
                                 callback=epoch_logger(logger, label, report))  # fmt: skip
        except optuna.TrialPruned:
            self.finish(logger, "pruned", epochs=epochs)
            self.study.tell(trial, state=TrialState.PRUNED)
            return slot
        except BaseException:
            logger.finish(RunStatus.to_string(RunStatus.FAILED), tags={"status": "failed"})
            raise
        metrics = summary_metrics(outcome, None)
        if outcome.status != "ok":  # diverged or collapsed: pruned with a zero, so TPE learns to avoid it
            trial.set_user_attr("status", outcome.status)
            trial.report(0.0, len(outcome.history.epoch) + 1)
            self.finish(logger, outcome.status, outcome=outcome, metrics=metrics)
            self.study.tell(trial, state=TrialState.PRUNED)
            return slot
        trial.set_user_attr("status", "ok")
        trial.set_user_attr("epochs_to_best", outcome.history.best_epoch)
        self.finish(logger, "ok", outcome=outcome, metrics=metrics)
        self.study.tell(trial, outcome.history.best_val_acc)
        return slot

    def finish(self, logger: RunLogger, tag: str, outcome: Outcome | None = None, metrics=None, epochs=None) -> None:
        """End the run with the trial's history (and checkpoint, when it trained to the end) as artifacts.
        Pruned, diverged and collapsed trials are FINISHED runs (``status`` says which): nothing failed."""
        with tempfile.TemporaryDirectory(prefix="nnstudy-trial-") as folder:
            history = history_json(outcome.history) if outcome else {"epochs": epochs}
            atomic_write_json(Path(folder) / "history.json", history)
            if outcome is not None:
                outcome.net.save(Path(folder) / "model.npz", extra={"status": outcome.status, "lr": self.lr})
            logger.finish(RunStatus.to_string(RunStatus.FINISHED), metrics=metrics, tags={"status": tag},
                          artifact_dir=folder)  # fmt: skip


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
    opt_study = create_study(open_storage(search_config["storage"], study_dir), name)
    client = MlflowClient(tracking["uri"])
    experiment = tracking["experiments"]["lr-search"]
    tags = {"study": tracking["study"], "search": study, "role": "parent"}
    kill_stale_runs(client, experiment, tags)
    parent = client.create_run(
        experiment, run_name=study, tags={**tags, "cell": cell.name, "optimizer": cell.optimizer}
    ).info.run_id
    for key in ("n_trials", "batch_size", "workers", "max_epochs", "seed", "trial_seed_base"):
        client.log_param(parent, key, search_config[key])
    client.log_param(parent, "storage", "journal" if search_config["storage"] == "journal" else "rdb")
    for key, value in {"cell": cell.name, "optimizer": cell.optimizer, "mlflow_parent_run_id": parent}.items():
        opt_study.set_user_attr(key, value)
    orphans = trials_without_runs(client, experiment, opt_study, tracking["workflow_id"], study)
    if orphans:
        log.warning(orphans_message(study, orphans, search_config["storage"]))
        client.set_tag(parent, "trials_without_runs", " ".join(map(str, orphans)))
    info = {"study": study, "storage_name": name, "study_dir": str(study_dir), "parent_run_id": parent,
            "trials_without_runs": orphans}  # fmt: skip
    atomic_write_json(out_path, info)
    return info


def trials_without_runs(
    client: MlflowClient, experiment: str, opt_study: optuna.Study, workflow_id: str, study: str
) -> list[int]:
    """This workflow's trials whose MLflow run the store does not hold: the store was deleted or replaced
    after they ran (another workflow sharing the study may log to a store of its own: its trials are left out)."""
    owner = f"{workflow_id}:{study}:"
    mine = [t for t in opt_study.get_trials(deepcopy=False)
            if str(t.user_attrs.get("owner", "")).startswith(owner) and "mlflow_run_id" in t.user_attrs]  # fmt: skip
    if not mine:
        return []
    known = {run.info.run_id for run in client.search_runs([experiment], filter_string=tag_filter({"search": study}),
                                                           run_view_type=ViewType.ALL, max_results=50_000)}  # fmt: skip
    return [t.number for t in mine if t.user_attrs["mlflow_run_id"] not in known]


def orphans_message(study: str, orphans: list[int], storage: str) -> str:
    """What a store without a search's trial runs means, and the repair."""
    where = "results/search/ (the journal results/search/optuna.journal with it)"
    if storage != "journal":
        where = f"results/search/{study}/ and the search's Optuna study in {storage!r} (optuna delete-study)"
    return (
        f"search {study}: {len(orphans)} finished trial(s) of this folder ({', '.join(map(str, orphans[:10]))}"
        f"{', ...' if len(orphans) > 10 else ''}) name MLflow runs this store does not hold: the store was "
        "deleted or replaced after they ran. Their results are kept and not trained again, so the search's "
        "answer stands, but MLflow shows no run for them (the parent run is tagged trials_without_runs). "
        f"To train and log them again (the same answer), delete {where} and run again."
    )


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, slot, round, state, value, lr, status, duration, and the best value so far
    (over slots in order; a pruned slot carries the best before it)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "slot": slot_of(t),
                "round": t.user_attrs.get("round"),
                "state": t.state.name,
                "value": t.value,
                "lr": t.params.get("lr"),
                "status": t.user_attrs.get("status", "killed" if t.state == TrialState.FAIL else t.state.name.lower()),
                "last_epoch": t.last_step,
                "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
                "duration_s": t.duration.total_seconds() if t.duration else None,
                "datetime_start": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
                "datetime_complete": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
            }
        )
    columns = ["number", "slot", "round", "state", "value", "lr", "status", "last_epoch", "mlflow_run_id",
               "duration_s", "datetime_start", "datetime_complete"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns).sort_values("number").reset_index(drop=True)
    holders = {t.number for t in finished_slots(study).values()}
    frame["holds_slot"] = frame["number"].isin(holders)
    frame["best_so_far"] = best_so_far(frame)
    return frame


def best_so_far(frame: pd.DataFrame) -> pd.Series:
    """The best completed value among the slots up to each row's slot (NaN before the first completion)."""
    held = frame[frame["holds_slot"]].sort_values("slot")
    running = held["value"].where(held["state"] == "COMPLETE").cummax().ffill()
    by_slot = dict(zip(held["slot"], running))
    return frame["slot"].map(by_slot).astype(float)


def select_best(frame: pd.DataFrame) -> pd.Series | None:
    """The completed slot with the highest value; ties go to the lowest slot (a fixed rule, not timing)."""
    complete = frame[frame["holds_slot"] & (frame["state"] == "COMPLETE")]
    if complete.empty:
        return None
    return complete.sort_values(["value", "slot"], ascending=[False, True]).iloc[0]


def export_search(
    *,
    setup: dict[str, Any],
    search_config: dict[str, Any],
    fallback_lr: float | None,
    cell: Cell,
    tracking: dict[str, Any],
    best_path: str | Path,
    trials_path: str | Path,
) -> dict[str, Any]:
    """Write the best learning rate and the trial table; close the parent MLflow run."""
    storage = open_storage(search_config["storage"], setup["study_dir"])
    opt_study = optuna.load_study(study_name=setup["storage_name"], storage=storage)
    frame = trials_frame(opt_study)
    held = frame[frame["holds_slot"]]
    best: dict[str, Any] = {
        "study": setup["study"],
        "cell": cell.name,
        "arch": cell.arch,
        "optimizer": cell.optimizer,
        "n_trials": int(len(held)),
        "n_complete": int((held["state"] == "COMPLETE").sum()),
        "n_pruned": int((held["status"] == "pruned").sum()),
        "n_diverged": int((held["status"] == "diverged").sum()),
        "n_collapsed": int((held["status"] == "collapsed").sum()),
        "n_killed_and_rerun": int((frame["state"] == "FAIL").sum()),
    }
    top = select_best(frame)
    if top is not None:
        best.update(lr=float(top["lr"]), best_val_acc=float(top["value"]), best_slot=int(top["slot"]),
                    best_trial=int(top["number"]), source="search")  # fmt: skip
    else:
        best.update(lr=fallback_lr, best_val_acc=None, best_slot=None, best_trial=None,
                    source="fallback (no completed trial)")  # fmt: skip
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
