"""The study on a real one-node SLURM cluster (munged, slurmctld and slurmd from Debian's packages), with the
workflow's SLURM profile, Optuna on PostgreSQL and an MLflow tracking server; and faults on that cluster."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from conftest import REPO, clean_env, write_small_study
from mlflow.tracking import MlflowClient
from slurm_cluster import ClusterError, OneNodeCluster, install_packages, wait_for

PROFILE = REPO / "workflow" / "profiles" / "slurm"
WORKFLOW_TIMEOUT = 1200  # seconds; a stuck Snakemake ignores SIGTERM, so it is killed by PID after this
# provenance, not results: when, how long, which MLflow run, which commit
TIME_COLUMNS = re.compile(r"time|wall|duration|seconds|_at$|run_id|model_id|git_commit", re.IGNORECASE)


@pytest.fixture(scope="module")
def cluster():
    reason = install_packages()
    if reason:
        pytest.skip(reason)
    try:
        one = OneNodeCluster().start()
    except ClusterError as error:
        pytest.skip(f"SLURM cannot start on this machine: {error}")
    try:
        yield one
    finally:
        one.stop()
        one.remove()


def configure(workdir: Path, **changes) -> dict:
    """The small test study with one search worker per study (so a search is deterministic and a local run
    and a SLURM run must give the same tables), with some sections changed (``section={key: value}``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_small_study(workdir)
    config["search"]["workers"] = 1
    config["protocol"] = {"arms": ["tuned"]}  # the arms are tested on the session study
    config["report"]["languages"] = ["en"]  # and both languages: here one makes the report rule run
    for section, values in changes.items():
        config[section].update(values)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


def snakemake_cmd(workdir: Path, *args: str, profile: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml")]  # fmt: skip
    if profile:  # the status check starts 2 s after a submission (the profile's 20 s suits a real cluster)
        cmd += ["--workflow-profile", str(PROFILE), "--slurm-init-seconds-before-status-checks", "2"]
    return cmd + list(args)


def start(cluster: OneNodeCluster, workdir: Path, *args: str, profile: bool = True) -> subprocess.Popen:
    log = open(workdir / "snakemake.out", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(snakemake_cmd(workdir, *args, profile=profile), stdout=log, stderr=subprocess.STDOUT,
                            env=cluster.env(clean_env()), start_new_session=True)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = WORKFLOW_TIMEOUT) -> int:
    """Wait for a workflow; past ``timeout`` kill its whole process group by PID and fail."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        pytest.fail(f"snakemake still ran after {timeout} s and was killed")


def run(cluster: OneNodeCluster, workdir: Path, *args: str, profile: bool = True) -> tuple[int, str]:
    """One Snakemake command to its end; its return code and the output it added to snakemake.out."""
    out = workdir / "snakemake.out"
    before = out.stat().st_size if out.exists() else 0
    code = finish(start(cluster, workdir, *args, profile=profile))
    return code, out.read_bytes()[before:].decode(errors="replace")


def run_id(output: str) -> str:
    """The SLURM run ID of one Snakemake run: every SLURM job of that run carries it as its job name."""
    return re.findall(r"SLURM run ID: (\S+)", output)[-1]


def planned_jobs(output: str) -> collections.Counter:
    """The 'Job stats' table Snakemake prints before it runs anything: jobs per rule."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return collections.Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)})


def slurm_log(workdir: Path, job_id: str) -> str:
    [path] = workdir.glob(f".snakemake/slurm_logs/**/{job_id}.log")
    return path.read_text(errors="replace")


def rules_run_by_slurm(cluster: OneNodeCluster, workdir: Path, output: str) -> collections.Counter:
    """Rules per SLURM job of this run: the SLURM log of each job (the Snakemake that ran inside it) names
    the rules it ran. Every job must have ended COMPLETED."""
    jobs = [j for j in cluster.jobs() if j["name"] == run_id(output)]
    assert jobs, "no SLURM job carries this run's ID"
    assert {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    ran = collections.Counter()
    for job in jobs:
        ran.update(re.findall(r"^rule (\w+):$", slurm_log(workdir, job["id"]), re.M))
    return ran


def tables(workdir: Path) -> dict[str, pd.DataFrame]:
    """Every final table, without the columns that measure time or name MLflow runs."""
    frames = {}
    for path in sorted((workdir / "results" / "tables").glob("*.csv")):
        frame = pd.read_csv(path)
        frames[path.name] = frame[[c for c in frame.columns if not TIME_COLUMNS.search(c)]]
    return frames


def assert_same_tables(ours: Path, theirs: Path) -> None:
    a, b = tables(ours), tables(theirs)
    assert sorted(a) == sorted(b) and a
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


# every rule, 6 trainings
SMALL = {"cnn": {"enabled": True}, "grid": {"batchnorm": [False], "dropout": [0.0], "seeds": [1, 2]}}
#: the default study's search mode, a study per cell of the tuned arm (here one cell per optimizer, and the CNN)
PER_CELL = {"per_cell": True}


def test_small_study_on_slurm_equals_local_run(tmp_path, cluster, postgres_url, mlflow_server):
    local = tmp_path / "local"
    config = configure(local, **SMALL, search=PER_CELL)
    local_run = start(cluster, local, "--cores", "2", profile=False)  # beside the SLURM run, which mostly waits

    work = tmp_path / "slurm"
    configure(
        work,
        **SMALL,
        search={**PER_CELL, "storage": postgres_url},
        mlflow={"tracking_uri": mlflow_server, "server_check_timeout_s": 300},
    )  # a busy machine
    started = time.monotonic()
    code, output = run(cluster, work)
    assert code == 0, output[-6000:] + cluster.logs()
    print(f"small study on SLURM: {time.monotonic() - started:.0f} s")
    assert finish(local_run) == 0, (local / "snakemake.out").read_text(errors="replace")[-4000:]

    # every rule (all but `all`, which has no action) ran inside SLURM jobs, each job exactly once
    planned = planned_jobs(output)
    del planned["all"]
    assert rules_run_by_slurm(cluster, work, output) == planned

    assert_same_tables(work, local)

    # nothing lost: every trial finished in PostgreSQL, one MLflow run per trial and per grid job
    client = MlflowClient(mlflow_server)
    search = client.get_experiment_by_name("nnstudy/lr-search").experiment_id
    search_runs = client.search_runs([search], max_results=1000)
    n_trials = {"lr-sgd-bn0-dp0": config["search"]["n_trials"], "lr-adam-bn0-dp0": config["search"]["n_trials"],
                "lr-cnn-adam-bn0-dp0": config["cnn"]["n_trials"]}  # fmt: skip
    for name, n in n_trials.items():
        trials = optuna.load_study(study_name=f"{config['study_name']}.{name}", storage=postgres_url).trials
        assert len([t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]) == n == len(trials)
        runs = [r for r in search_runs if r.data.tags.get("search") == name and "trial" in r.data.tags]
        assert sorted(int(r.data.tags["trial"]) for r in runs) == sorted(t.number for t in trials)
        # pruned, diverged and collapsed trials are FINISHED runs (the status tag says which); none is RUNNING
        status = {"ok": "FINISHED", "pruned": "FINISHED", "diverged": "FINISHED", "collapsed": "FINISHED",
                  "failed": "FAILED"}  # fmt: skip
        assert all(r.info.status == status[r.data.tags["status"]] for r in runs), [r.info for r in runs]
    grid = client.get_experiment_by_name("nnstudy/grid").experiment_id
    grid_runs = client.search_runs([grid], max_results=1000)
    assert len(grid_runs) == 6 and {r.info.status for r in grid_runs} <= {"FINISHED", "FAILED"}
    assert len(pd.read_csv(work / "results/tables/runs.csv")) == 6


def slurm_jobs_of(cluster: OneNodeCluster, workdir: Path, state: str, rule: str) -> list[dict]:
    """The jobs in ``state`` that this workdir's Snakemake submitted for ``rule`` (alone or in a group)."""
    out = workdir / "snakemake.out"
    ids = re.findall(r"jobid (\d+) \(log: ([^)]*)\)", out.read_text(errors="replace")) if out.exists() else []
    mine = {job_id for job_id, log in ids if re.search(rf"slurm_logs/(rule_{rule}/|group_\w*_{rule}/)", log)}
    return [j for j in cluster.jobs() if j["id"] in mine and j["state"] == state]


GRID_ONLY = {"search": {"enabled": False}, "cnn": {"enabled": False}, "report": {"languages": ["en"]},
             "grid": {"batchnorm": [False], "dropout": [0.0], "seeds": [1, 2]}}  # fmt: skip


@pytest.fixture(scope="module")
def grid_reference(tmp_path_factory, cluster):
    """A local run of the grid-only study, the reference the fault tests' tables must equal: started at once,
    it runs beside the SLURM workflow (which mostly waits); the test awaits it where it needs it."""
    work = tmp_path_factory.mktemp("grid-local")
    configure(work, **GRID_ONLY)
    proc = start(cluster, work, "--cores", "2", profile=False)

    def finished() -> Path:
        assert finish(proc) == 0, (work / "snakemake.out").read_text(errors="replace")[-4000:]
        return work

    yield finished
    finish(proc)


def test_scancel_drain_and_limits_then_documented_recovery(tmp_path, cluster, grid_reference):
    work = tmp_path / "faults"
    config = configure(work, **GRID_ONLY)

    # 1. scancel a training job while it trains: Snakemake reports it and finishes what it can (keep-going)
    proc = start(cluster, work)
    training = wait_for(
        lambda: proc.poll() is None and list(work.glob("results/logs/grid/*/*.log"))
        and slurm_jobs_of(cluster, work, "RUNNING", "train"),
        900, "a training job to run",
    )  # fmt: skip
    cluster.command("scancel", training[0]["id"])
    assert finish(proc) != 0
    output = (work / "snakemake.out").read_text(errors="replace")
    assert "Error in group grid" in output, output[-3000:]  # the group job of the trainings, with its SLURM log:
    assert re.search(rf"\*\*\* JOB {training[0]['id']} ON \S+ CANCELLED AT", output), output[-3000:]

    # 2. the recovery (README): the same command again; meanwhile the node is drained, then resumed
    cluster.scontrol("update", f"nodename={cluster.node}", "state=drain", "reason=nnstudy-test")
    proc = start(cluster, work)
    pending = wait_for(lambda: proc.poll() is None and slurm_jobs_of(cluster, work, "PENDING", "train"),
                       900, "the resubmitted training job to wait for the drained node")  # fmt: skip
    assert cluster.node_state().startswith("DRAIN"), cluster.node_state()
    assert not slurm_jobs_of(cluster, work, "RUNNING", "train")
    cluster.scontrol("update", f"nodename={cluster.node}", "state=resume")
    assert finish(proc) == 0, (work / "snakemake.out").read_text(errors="replace")[-4000:]
    assert [j for j in cluster.jobs() if j["id"] == pending[0]["id"]][0]["state"] == "COMPLETED"

    assert_same_tables(work, grid_reference())
    client = MlflowClient(f"sqlite:///{work / 'results/mlflow/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("nnstudy/grid").experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    current = [r for r in runs if r.data.tags["superseded"] == "false"]
    assert len(current) == 4 and {r.info.status for r in current} == {"FINISHED"}

    # 3. a job over its mem_mb, then one over its runtime: each is named with its rule and resource;
    #    the recovery is the profile's figure (here: the same command without the lowered limit)
    target = "results/grid/sgd-bn0-dp0/seed1/result.json"
    before = json.loads((work / target).read_text())
    code, output = run(cluster, work, target, "--forcerun", target, "--set-resources", "train:mem_mb=60")
    assert code != 0
    message = r"nnstudy: rule train \(SLURM job \d+\) exceeded its memory, mem_mb=60: raise it under set-resources: "
    assert re.search(message + "train: in workflow/profiles/slurm/config.yaml", output), output[-4000:]
    long = {**config, "training": {**config["training"], "max_epochs": 10_000, "patience": 10_000}}
    (work / "config.yaml").write_text(yaml.safe_dump(long))  # the run is sure to outlast one minute
    code, output = run(cluster, work, target, "--set-resources", "train:runtime=1")
    assert code != 0
    assert re.search(r"nnstudy: rule train \(SLURM job \d+\) exceeded its time limit, runtime=1 \(minutes\)",
                     output), output[-4000:]  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    code, output = run(cluster, work, target)
    assert code == 0, output[-4000:]
    after = json.loads((work / target).read_text())
    for result in (before, after):  # the same training again, but for its timings
        result["history"] = {k: v for k, v in result["history"].items() if not TIME_COLUMNS.search(k)}
    assert {k: after[k] for k in ("best_val_acc", "test_acc", "epochs", "history")} == {
        k: before[k] for k in ("best_val_acc", "test_acc", "epochs", "history")
    }


def test_slurm_profile_names_only_rules_of_the_workflow(tmp_path):
    """Snakemake ignores a rule name it does not know in set-resources, set-threads or groups; a renamed rule
    would silently lose its resources on the cluster."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    named = set(profile.get("set-resources", {})) | set(profile.get("set-threads", {})) | set(profile["groups"])
    configure(tmp_path)
    proc = subprocess.run(snakemake_cmd(tmp_path, "--list-rules", profile=False), capture_output=True, text=True,
                          timeout=300, env=clean_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}  # "rule (its docstring)"
    assert named <= rules, f"the SLURM profile names rules the workflow does not have: {sorted(named - rules)}"
    assert rules - {"all"} <= set(profile["set-resources"]), "every rule's resources are set in the profile"
