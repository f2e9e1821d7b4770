"""What limits the study when it runs on many machines, measured on this one.

1. Optuna on PostgreSQL: trials per second with 1, 2, 4 and 8 worker processes on one study, with a trivial
   objective (so only the storage and the sampler cost time), the sampler the study uses (TPE, seeded).
2. The MLflow tracking server: ``log_batch`` calls per second (10 metrics each, as an epoch logs) from 1, 4 and
   8 client processes, against a server with the SQLite store the tests use.
3. Snakemake: how long building the DAG of 100 cells x 20 seeds takes (a dry run; searches on, one per
   optimizer and, in a second run, one per cell).

PostgreSQL and the MLflow server are throw-away servers on 127.0.0.1 (tests/servers.py), stopped at the end.

    .venv/bin/python benchmarks/scaling.py            # all three, about 3 minutes on 2 cores
    .venv/bin/python benchmarks/scaling.py --seconds 5 --only dag
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import servers  # noqa: E402


def cpu_name() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


# -- 1. Optuna on PostgreSQL ----------------------------------------------------------------------------
def optuna_worker(url: str, name: str, seconds: float, worker: int, start_at: float, out) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=url,
                              sampler=optuna.samplers.TPESampler(seed=worker, n_startup_trials=5))  # fmt: skip
    time.sleep(max(0.0, start_at - time.time()))  # all workers start together
    done = 0
    while time.time() < start_at + seconds:
        trial = study.ask()
        x = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        study.tell(trial, (x - 0.01) ** 2)
        done += 1
    out.put(done)


def optuna_trials_per_second(url: str, workers: int, seconds: float) -> float:
    import optuna

    name = f"bench-{workers}"
    optuna.create_study(study_name=name, storage=url, direction="minimize")
    return per_second(optuna_worker, [(url, name, seconds, w) for w in range(workers)], seconds)


def per_second(target, arguments: list[tuple], seconds: float) -> float:
    """Run ``target(*args, start_at, queue)`` in one process per ``args``, all starting their ``seconds`` of
    work together (after every process has imported its libraries and connected); the summed count per second."""
    out = mp.Queue()
    start_at = time.time() + 5 + len(arguments)
    procs = [mp.Process(target=target, args=(*args, start_at, out)) for args in arguments]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return total / seconds


# -- 2. MLflow tracking server ----------------------------------------------------------------------------
def mlflow_client(url: str, experiment: str, seconds: float, start_at: float, out) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    run = client.create_run(experiment).info.run_id
    time.sleep(max(0.0, start_at - time.time()))
    calls = 0
    while time.time() < start_at + seconds:
        now = int(time.time() * 1000)
        client.log_batch(run, metrics=[Metric(f"m{i}", float(calls), now, calls) for i in range(10)])
        calls += 1
    client.set_terminated(run)
    out.put(calls)


def mlflow_calls_per_second(url: str, clients: int, seconds: float) -> float:
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(url).create_experiment(f"bench-{clients}")
    return per_second(mlflow_client, [(url, experiment, seconds)] * clients, seconds)


# -- 3. Snakemake DAG ---------------------------------------------------------------------------------------
def dag_seconds(folder: Path, per_cell: bool, profile: bool) -> tuple[float, float, int]:
    """A dry run of 2 optimizers x 2 batch-norm settings x 25 dropout rates = 100 cells, 20 seeds each, with the
    SLURM profile (its job groups) or without; wall and CPU seconds, and the number of jobs."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["grid"]["dropout"] = [round(0.02 * i, 2) for i in range(25)]
    config["grid"]["seeds"] = list(range(1, 21))
    config["search"]["per_cell"] = per_cell
    config["cnn"]["enabled"] = False
    work = folder / f"dag-{per_cell}-{profile}"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--dry-run", "--quiet", "rules"]  # fmt: skip
    if profile:
        cmd += ["--workflow-profile", str(REPO / "workflow/profiles/slurm")]
    cpu_before = cpu_of_children()
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    totals = [int(line.split()[-1]) for line in proc.stdout.splitlines() if line.split()[:1] == ["total"]]
    return seconds, cpu_of_children() - cpu_before, totals[0]


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15, help="how long each throughput measurement runs")
    parser.add_argument("--only", choices=["optuna", "mlflow", "dag"], action="append")
    args = parser.parse_args()
    parts = args.only or ["optuna", "mlflow", "dag"]
    print(f"# {cpu_name()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    if "optuna" in parts:
        with servers.postgres() as url:
            for workers in (1, 2, 4, 8):
                rate = optuna_trials_per_second(url, workers, args.seconds)
                print(f"optuna-postgresql workers={workers}: {rate:.1f} trials/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="nnstudy-scaling-") as tmp:
        folder = Path(tmp)
        if "mlflow" in parts:
            with servers.mlflow_server(folder) as url:
                for clients in (1, 4, 8):
                    rate = mlflow_calls_per_second(url, clients, args.seconds)
                    print(f"mlflow-server log_batch clients={clients}: {rate:.1f} calls/s", flush=True)
        if "dag" in parts:
            for per_cell, profile in ((False, False), (False, True), (True, True)):
                seconds, cpu, jobs = dag_seconds(folder, per_cell, profile)
                print(f"snakemake dry run, 100 cells x 20 seeds, per_cell={per_cell}, slurm profile={profile}: "
                      f"{jobs} jobs, {seconds:.1f} s wall, {cpu:.1f} s CPU", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
