"""Fault injection with real Snakemake, MLflow and Optuna: divergence, kill -9 and resume, shared studies."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import yaml
from conftest import REPO, clean_env, snakemake, write_small_study
from mlflow.tracking import MlflowClient

from nnstudy.search import finished_slots, slot_of
from nnstudy.tracking import study_store

ACCURACY_COLUMNS = ["optimizer", "variant", "n", "n_diverged", "best_val_acc_mean", "best_val_acc_std",
                    "test_acc_mean", "test_acc_std", "epochs_to_best_mean", "epochs_mean"]  # fmt: skip


def configure(workdir: Path, **changes) -> dict:
    """The small study without the CNN, with some sections changed (``section={key: value}``)."""
    config = write_small_study(workdir)
    config["cnn"]["enabled"] = False
    config["mlflow"]["log_models"] = False  # the models are tested on the session study; here they cost time
    config["report"]["languages"] = ["en"]  # both languages are tested on the session study
    config["protocol"] = {"arms": ["tuned"]}  # both arms are tested on the session study
    for section, values in changes.items():
        config[section].update(values)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


def resume(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    """What a user does after a kill: release Snakemake's stale lock, then the same command again."""
    unlock = snakemake(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    return snakemake(workdir, "--cores", "2", *targets)


def start(workdir: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]  # fmt: skip
    log = open(workdir / "snakemake.out", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 1800) -> None:
    """kill -9 the whole process group as soon as ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the workflow ended before the kill"
            assert time.monotonic() < deadline, "the kill condition never held"
            time.sleep(0.2)
    finally:  # also when the condition fails: no workflow is left running behind the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextlib.contextmanager
def beside(workdir: Path, *args: str):
    """A workflow run in the background while the test does something else (the machine's other core is
    often idle while a test waits on a kill condition); yields a function that awaits its success."""
    proc = start(workdir, *args)

    def succeeded() -> None:
        assert proc.wait(timeout=1800) == 0, (workdir / "snakemake.out").read_text(errors="replace")[-3000:]

    try:
        yield succeeded
    finally:  # also when the test fails first: nothing is left running behind it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def store(workdir: Path) -> tuple[MlflowClient, dict]:
    uri, experiments = study_store(workdir)
    return MlflowClient(uri), experiments


def open_study(path: Path, name: str) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage)


def test_diverging_learning_rates_are_recorded_not_fatal(tmp_path):
    configure(
        tmp_path,
        grid={"batchnorm": [False], "dropout": [0.0], "fallback_lr": {"sgd": 1.0e25, "adam": 0.002}},
        search={"lr_range": {"sgd": [1.0e20, 1.0e30], "adam": [1.0e-4, 1.0e-2]}, "n_trials": 3, "workers": 1},
    )
    proc = snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((tmp_path / "results/search/lr-sgd/best.json").read_text())
    assert best["n_complete"] == 0 and best["n_diverged"] >= 3 and best["lr"] == 1.0e25
    assert best["source"].startswith("fallback")
    runs = pd.read_csv(tmp_path / "results/tables/runs.csv")
    assert set(runs.loc[runs["optimizer"] == "sgd", "status"]) == {"diverged"}
    assert set(runs.loc[runs["optimizer"] == "adam", "status"]) == {"ok"}
    table1 = pd.read_csv(tmp_path / "results/tables/table1.csv").set_index("optimizer")
    assert table1.loc["sgd", "n"] == 0 and table1.loc["sgd", "n_diverged"] == 2
    assert "2 diverged" in (tmp_path / "results/tables/table1.md").read_text()
    assert "diverged" in (tmp_path / "report/lab_report.en.md").read_text()
    client, experiments = store(tmp_path)
    sgd_runs = client.search_runs([experiments["grid"]], "tags.optimizer = 'sgd'")
    assert len(sgd_runs) == 2
    assert all(r.info.status == "FAILED" and r.data.tags["status"] == "diverged" for r in sgd_runs)
    trials = client.search_runs([experiments["lr-search"]], "tags.search = 'lr-sgd' and tags.status = 'diverged'")
    assert len(trials) >= 3


def test_kill_minus_9_then_resume_keeps_finished_work(tmp_path):
    # 4 cells x 3 seeds, a job each, trainings of seconds (the kill waits for trainings done and one under way)
    changes = {"search": {"enabled": False}, "grid": {"dropout": [0.0], "seeds": [1, 2, 3]},
               "training": {"hidden": [1024], "max_epochs": 8, "patience": 8}}  # fmt: skip
    reference = tmp_path / "reference"
    reference.mkdir()
    configure(reference, **changes)
    table2 = "results/tables/table2.csv"  # the grid and its tables: figures and report add nothing here
    with beside(reference, table2) as reference_done:
        check_kill_and_resume(tmp_path / "killed", changes, table2)
        reference_done()
    ours = pd.read_csv(tmp_path / "killed" / table2)[ACCURACY_COLUMNS]
    theirs = pd.read_csv(reference / table2)[ACCURACY_COLUMNS]
    pd.testing.assert_frame_equal(ours, theirs)


def check_kill_and_resume(work: Path, changes: dict, table2: str) -> None:
    """kill -9 a grid with trainings done and one under way, resume it: every finished training is kept, not
    redone; the one under way is redone; and every MLflow run left RUNNING by the kill is marked KILLED."""
    work.mkdir()
    configure(work, **changes)
    proc = start(work, table2)

    def trainings_done_and_one_under_way() -> bool:
        log = (work / "snakemake.out").read_text(errors="replace")
        done = {(p.parent.parent.name, p.parent.name) for p in work.glob("results/grid/*/seed*/result.json")}
        started = set(re.findall(r"^> train (\S+) (seed\d+)$", log, re.MULTILINE))  # the console's start lines
        return len(done) >= 5 and bool(started - done)

    kill_when(proc, trainings_done_and_one_under_way)  # a training lasts seconds: the state is seen
    present = set(work.glob("results/grid/*/*/result.json"))
    assert snakemake(work, "--unlock").returncode == 0
    plan = snakemake(work, "-n", "--cores", "2", table2).stdout  # what Snakemake will (re)do: missing or incomplete
    outputs = " ".join(re.findall(r"^\s*output: (.*)$", plan, re.MULTILINE))  # not the tables' inputs
    todo = {work / m for m in re.findall(r"results/grid/[^/\s,]+/seed\d+/result\.json", outputs)}
    done_before = {p: json.loads(p.read_text())["mlflow_run_id"] for p in present - todo}
    assert len(done_before) >= 3 and len(todo) >= 1
    # a job per seed: no training Snakemake saw finish is redone; a result written just before the kill, whose
    # job Snakemake had not yet recorded as finished (two at most: two cores), is redone as incomplete
    assert len(present & todo) <= 2
    client, experiments = store(work)
    left_running = {r.info.run_id for r in client.search_runs([experiments["grid"]], "attributes.status = 'RUNNING'")}

    resumed = resume(work, table2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for path, run_id in done_before.items():  # finished work is kept, not redone
        assert json.loads(path.read_text())["mlflow_run_id"] == run_id
    runs = client.search_runs([experiments["grid"]], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    statuses = {r.info.run_id: r.info.status for r in runs}
    assert all(statuses[run_id] == "KILLED" for run_id in left_running - set(done_before.values()))
    current = [r for r in runs if r.data.tags["superseded"] == "false"]
    assert len(current) == 12 and all(r.info.status == "FINISHED" for r in current)
    results = {json.loads(p.read_text())["mlflow_run_id"] for p in work.glob("results/grid/*/*/result.json")}
    assert results == {r.info.run_id for r in current}


def test_kill_during_search_loses_no_trial(tmp_path):
    """kill -9 while trials run, then resume: every slot ends with exactly one finished trial, the finished
    ones are kept, and Optuna and MLflow agree (a trial names its run, which exists before the trial does)."""
    config = configure(
        tmp_path,
        grid={"optimizers": ["adam"], "batchnorm": [False], "dropout": [0.0], "seeds": [1]},
        search={"n_trials": 8, "batch_size": 4, "workers": 2},
    )
    journal = tmp_path / "results/search/optuna.journal"
    name = f"{config['study_name']}.lr-adam"

    def two_complete() -> bool:
        if not journal.exists():
            return False
        try:
            return len(open_study(journal, name).get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= 2
        except Exception:  # not written yet, or caught mid-write: polling only, the checks below read it at rest
            return False

    search = "results/search/lr-adam/best.json"  # the search alone: the grid adds nothing here
    proc = start(tmp_path, search)
    kill_when(proc, two_complete)
    before = {slot_of(t): t.value for t in open_study(journal, name).trials if t.state.name == "COMPLETE"}
    resumed = resume(tmp_path, search)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = open_study(journal, name)
    holders = finished_slots(study)
    assert sorted(holders) == list(range(8))
    for slot, value in before.items():  # finished work is kept, not redone
        assert holders[slot].value == value
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert len(study.trials) == 8 + len([t for t in study.trials if t.state.name == "FAIL"])
    client, experiments = store(tmp_path)
    runs = {r.info.run_id: r for r in client.search_runs([experiments["lr-search"]], max_results=1000)}
    trial_runs = {run_id: r for run_id, r in runs.items() if r.data.tags.get("role") != "parent"}
    assert not [r for r in trial_runs.values() if r.info.status == "RUNNING"]
    for trial in study.trials:
        run = trial_runs[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == ("KILLED" if trial.state.name == "FAIL" else "FINISHED")
        assert run.data.tags["slot"] == str(slot_of(trial))
    named = {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert all(r.info.status == "KILLED" for run_id, r in trial_runs.items() if run_id not in named)


def test_a_deleted_store_is_named_at_the_start_and_the_trials_without_runs_on_the_parent(tmp_path):
    """Deleting results/mlflow after a search: the plan warns before any job, the searches keep their
    finished trials (not trained again), and the new parent run and setup.json name the trials whose runs
    the new store lacks."""
    config = configure(
        tmp_path,
        grid={"optimizers": ["adam"], "batchnorm": [False], "dropout": [0.0], "seeds": [1]},
        search={"n_trials": 2, "batch_size": 2, "workers": 1, "max_epochs": 1},
    )
    search = "results/search/lr-adam/best.json"
    first = snakemake(tmp_path, "--cores", "2", search)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "results/mlflow/mlflow.db is missing" not in first.stderr
    journal = tmp_path / "results/search/optuna.journal"
    name = f"{config['study_name']}.lr-adam"
    trials = {t.number: t.user_attrs["mlflow_run_id"] for t in open_study(journal, name).trials}
    assert len(trials) == 2
    best = (tmp_path / search).read_text()
    shutil.rmtree(tmp_path / "results/mlflow")
    # the store as a target, as the default target's register_models asks for it (results/mlflow/registered.json)
    again = snakemake(tmp_path, "--cores", "2", search, "results/mlflow/store.json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "results/mlflow/mlflow.db is missing but results/search/ holds earlier searches" in again.stderr
    assert "delete results/search/ too" in again.stderr
    assert len(open_study(journal, name).trials) == 2  # nothing trained again
    assert (tmp_path / search).read_text() == best
    setup = json.loads((tmp_path / "results/search/lr-adam/setup.json").read_text())
    assert setup["trials_without_runs"] == sorted(trials)
    client, experiments = store(tmp_path)
    parent = client.get_run(setup["parent_run_id"])
    assert parent.data.tags["trials_without_runs"] == " ".join(map(str, sorted(trials)))
    log = (tmp_path / "results/logs/search/lr-adam/setup.log").read_text()
    assert "name MLflow runs this store does not hold" in log and "optuna.journal" in log
    third = snakemake(tmp_path, "--cores", "2", search)  # the new store exists: no warning, nothing to do
    assert third.returncode == 0 and "mlflow.db is missing" not in third.stderr


#: what the answers are read from (no figures or report: they do not change an answer)
ANSWER_TARGETS = ("results/tables/table1.csv", "results/tables/table2.csv")


def answers(workdir: Path, variants: tuple[str, ...] = ("BPNN",)) -> dict:
    """What must not depend on scheduling: the tuned arm's rows of Table 1 and its rows of Table 2 for
    ``variants``, every value exactly as written, and every study's best LR (the replication arm has no
    search: nothing in it is scheduled)."""
    tables = {}
    for name in ("table1", "table2"):
        text = (workdir / f"results/tables/{name}.csv").read_text().splitlines()
        rows = [line for line in text[1:] if line.startswith("tuned,")]
        if name == "table2":
            rows = [line for line in rows if line.split(",")[2] in variants]
        tables[name] = [text[0], *rows]
        assert rows, text
    best = {p.parent.name: json.loads(p.read_text())["lr"] for p in workdir.glob("results/search/*/best.json")}
    return {**tables, "best": best}


def write_plain_tuned(workdir: Path) -> dict:
    """The session study's config in the tuned arm alone, its plain cells only (BPNN with each optimizer,
    and the CNN), without logging MLflow models: none of this changes an answer of those cells, whose
    searches (one per optimizer) are the session study's."""
    config = write_small_study(workdir)
    config["mlflow"]["log_models"] = False
    config["protocol"]["arms"] = ["tuned"]
    config["grid"].update(batchnorm=[False], dropout=[0.0])
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


def test_the_same_config_gives_the_same_answers_with_any_cores_and_after_a_kill(study, tmp_path):
    """The session study ran with --cores 8.  Its plain tuned cells alone, in a folder whose name needs
    quoting in MLflow filters, run with --cores 1 until a part of a second round has finished (so a round
    has been proposed from the one before), killed by kill -9 mid-search and resumed with --cores 2, give
    the same learning rates and, line for line, the same tuned-arm rows of Table 1 and BPNN rows of Table 2."""
    reference = answers(study[0])
    assert len(reference["best"]) == 3

    quirky = tmp_path / "o'brien w"
    quirky.mkdir()
    write_plain_tuned(quirky)
    # files only: reading the journal while it is written is not safe
    kill_when(start(quirky, "--cores", "1", *ANSWER_TARGETS),
              lambda: any(quirky.glob("results/search/*/round1/part*.json")))  # fmt: skip
    resumed = resume(quirky, *ANSWER_TARGETS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert answers(quirky) == reference


def test_runs_that_go_nowhere_are_counted_apart_and_checkpoints_and_results_are_repaired(tmp_path):
    """Every run collapses or diverges: tables count them, figures and report still build with a note.
    A deleted checkpoint is rebuilt by a plain rerun; a truncated result file is named with its fix."""
    configure(
        tmp_path,
        grid={"batchnorm": [False], "dropout": [0.0], "seeds": [1], "fallback_lr": {"sgd": 1000.0, "adam": 1.0e25}},
        search={"lr_range": {"sgd": [10.0, 1000.0], "adam": [1.0e20, 1.0e30]}, "n_trials": 3, "workers": 1},
        report={"languages": ["en", "zh"]},
    )
    proc = snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((tmp_path / "results/search/lr-sgd/best.json").read_text())
    assert best["n_complete"] == 0 and best["n_collapsed"] == 3 and best["source"].startswith("fallback")
    runs = pd.read_csv(tmp_path / "results/tables/runs.csv").set_index("optimizer")
    assert runs.loc["sgd", "status"] == "collapsed" and runs.loc["adam", "status"] in ("diverged", "collapsed")
    assert runs.loc["sgd", "lr_source"] == "fallback (lr-sgd: no completed trial)"  # not "search:lr-sgd"
    table1 = pd.read_csv(tmp_path / "results/tables/table1.csv").set_index("optimizer")
    assert (table1["n"] == 0).all() and table1.loc["sgd", "n_collapsed"] == 1
    assert "1 collapsed" in (tmp_path / "results/tables/table1.md").read_text()
    for name in ("curves_sgd", "curves_adam", "grid_comparison"):
        assert (tmp_path / f"results/figures/{name}.png").stat().st_size > 1_000
    for lang in ("en", "zh"):
        assert (tmp_path / f"report/lab_report.{lang}.pdf").stat().st_size > 10_000
    assert "collapsed" in (tmp_path / "report/lab_report.en.md").read_text()
    assert json.loads((tmp_path / "results/recogniser.json").read_text())["models"] == []
    assert "the recogniser had no model to measure" in (tmp_path / "report/lab_report.en.md").read_text()

    model = tmp_path / "results/grid/sgd-bn0-dp0/seed1/model.npz"
    model.unlink()
    proc = snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert model.exists()

    result = tmp_path / "results/grid/adam-bn0-dp0/seed1/result.json"
    result.write_text(result.read_text()[:100])
    proc = snakemake(tmp_path, "--cores", "2", "--forcerun", "tables")
    assert proc.returncode != 0
    logs = proc.stdout + proc.stderr + (tmp_path / "results/logs/tables.log").read_text()
    assert f"{Path('results/grid/adam-bn0-dp0/seed1/result.json')} is damaged" in logs
    assert "rm 'results/grid/adam-bn0-dp0/seed1/result.json'" in logs
    result.unlink()
    proc = snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(result.read_text())["status"] in ("diverged", "collapsed")


def two_workflows_on_one_study(tmp_path: Path, storage: str, tracking_uri: str, open_trials) -> None:
    """Two Snakemake processes work on one Optuna study and one MLflow store at once; count everything."""
    changes = {
        "grid": {"optimizers": ["adam"], "batchnorm": [False], "dropout": [0.0], "seeds": [1]},
        "search": {"n_trials": 10, "workers": 2, "storage": storage},
        "mlflow": {"tracking_uri": tracking_uri, "flush_seconds": 0, "server_check_timeout_s": 300},  # a busy machine
    }
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
        config = configure(d, **changes)
    procs = [start(d, "results/search/lr-adam/best.json") for d in dirs]
    for p in procs:
        assert p.wait(timeout=400) == 0
    logs = "".join((d / "snakemake.out").read_text() for d in dirs)
    logs += "".join(p.read_text() for d in dirs for p in (d / "results/logs").rglob("*.log"))
    assert "database is locked" not in logs and "Traceback" not in logs
    trials = open_trials(f"{config['study_name']}.lr-adam")
    assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) >= 10
    assert not [t for t in trials if t.state.name in ("RUNNING", "FAIL")]
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("nnstudy/lr-search")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if "trial" in r.data.tags]
    assert len(trial_runs) == len(trials)
    assert sorted(int(r.data.tags["trial"]) for r in trial_runs) == sorted(t.number for t in trials)
    assert {a.path for a in client.list_artifacts(trial_runs[0].info.run_id)} >= {"history.json"}


def test_two_workflows_share_one_study_on_one_machine(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    journal = shared / "study.journal"
    two_workflows_on_one_study(
        tmp_path,
        f"journal:{journal}",
        f"sqlite:///{shared / 'mlflow.db'}",
        lambda name: open_study(journal, name).trials,
    )


def test_two_workflows_share_postgresql_and_a_tracking_server(tmp_path, postgres_url, mlflow_server):
    def trials(name: str):
        return optuna.load_study(study_name=name, storage=postgres_url).trials

    two_workflows_on_one_study(tmp_path, postgres_url, mlflow_server, trials)
