"""Measure every rule's real peak memory, wall time and CPU use on a study, for the SLURM profile's figures.

Runs ``snakemake`` on the given config in a work folder with a ``sitecustomize`` hook on PYTHONPATH. Each
rule here is a ``script:`` rule, which Snakemake runs as its own Python process; at that process's exit the
hook appends one line to a JSON-lines file: the rule, its wildcards, the wall time since interpreter start,
the CPU time, and the peak resident set size of the process and of its children (``getrusage``'s
``ru_maxrss``, exact, no sampling). Then it prints one row per rule: jobs, summed and max/median wall
time, summed CPU time, max RSS, CPU/wall; and the study's efficiency from its own result files: the
seconds spent training (every grid run's ``wall_time`` and every search trial's ``duration_s``) over the
workflow's wall time times its cores. The same text goes to ``<workdir>/results/benchmarks/profile.md``.

    NNSTUDY_MNIST_MIRRORS=/work/shared/mnist python benchmarks/rule_resources.py /tmp/measure --cores 2
    python benchmarks/rule_resources.py /tmp/measure --report-only      # the table again
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HOOK = """\
import atexit, json, os, resource, sys, time

_start = time.time()


def _nnstudy_record():
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    if job is None or not hasattr(job, "rule"):
        return
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = {"rule": job.rule, "wildcards": dict(job.wildcards.items()), "threads": job.threads,
           "mem_mb": getattr(job.resources, "mem_mb", None), "runtime": getattr(job.resources, "runtime", None),
           "wall_s": time.time() - _start, "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
           "max_rss_mb": max(me.ru_maxrss, kids.ru_maxrss) / 1024.0, "host": os.uname().nodename}
    with open(os.environ["NNSTUDY_USAGE_LOG"], "a") as f:
        f.write(json.dumps(row) + "\\n")


atexit.register(_nnstudy_record)
"""


def run(workdir: Path, configfile: Path, snakemake_args: list[str]) -> float:
    workdir.mkdir(parents=True, exist_ok=True)
    hook = workdir / "usage-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    shutil.copy(configfile, workdir / "config.yaml")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["NNSTUDY_USAGE_LOG"] = str(workdir / "usage.jsonl")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *snakemake_args]  # fmt: skip
    start = time.monotonic()
    subprocess.run(cmd, env=env, check=True)
    seconds = time.monotonic() - start
    cores = int(snakemake_args[snakemake_args.index("--cores") + 1]) if "--cores" in snakemake_args else None
    (workdir / "usage-wall.json").write_text(json.dumps({"wall_s": seconds, "cores": cores}))
    return seconds


def study_folder(workdir: Path) -> Path:
    """Where the study keeps its results: its config's ``output_dir`` inside the work folder."""
    import yaml

    config = yaml.safe_load((workdir / "config.yaml").read_text()) or {}
    return workdir / config.get("output_dir", ".")


def training_seconds(workdir: Path) -> tuple[float, int, float, int]:
    """Seconds spent training, from the study's own files: grid runs (result.json ``wall_time``) and search
    trials (trials.csv ``duration_s``), with how many of each."""
    workdir = study_folder(workdir)
    grid = [json.loads(p.read_text())["wall_time"] for p in workdir.glob("results/grid/*/seed*/result.json")]
    trials = []
    for path in workdir.glob("results/search/*/trials.csv"):
        with path.open() as f:
            trials += [float(row["duration_s"]) for row in csv.DictReader(f) if row["duration_s"]]
    return sum(grid), len(grid), sum(trials), len(trials)


def report(workdir: Path, wall_s: float | None = None, cores: int | None = None) -> str:
    rows = [json.loads(line) for line in (workdir / "usage.jsonl").read_text().splitlines() if line.strip()]
    by_rule: dict[str, list[dict]] = {}
    for row in rows:
        by_rule.setdefault(row["rule"], []).append(row)
    header = ("| rule | jobs | wall sum (s) | wall max (s) | wall median (s) | CPU sum (s) | CPU/wall | peak RSS (MB) "
              "| declared mem_mb, runtime |")  # fmt: skip
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for rule, jobs in sorted(by_rule.items(), key=lambda item: -sum(j["cpu_s"] for j in item[1])):
        walls, cpus = [j["wall_s"] for j in jobs], [j["cpu_s"] for j in jobs]
        rss = max(j["max_rss_mb"] for j in jobs)
        declared = f"{jobs[0]['mem_mb']}, {jobs[0]['runtime']}"
        wall = f"{sum(walls):.0f} | {max(walls):.1f} | {statistics.median(walls):.1f}"
        cpu = f"{sum(cpus):.0f} | {sum(cpus) / max(sum(walls), 1e-9):.2f}"
        lines.append(f"| {rule} | {len(jobs)} | {wall} | {cpu} | {rss:.0f} | {declared} |")
    all_walls, all_cpus = sum(r["wall_s"] for r in rows), sum(r["cpu_s"] for r in rows)
    ratio = all_cpus / max(all_walls, 1e-9)
    lines.append(f"| all jobs | {len(rows)} | {all_walls:.0f} | | | {all_cpus:.0f} | {ratio:.2f} | | |")
    saved = workdir / "usage-wall.json"
    if saved.exists():
        recorded = json.loads(saved.read_text())
        wall_s, cores = wall_s or recorded["wall_s"], cores or recorded["cores"]
    grid_s, n_grid, trial_s, n_trials = training_seconds(workdir)
    lines.append("")
    lines.append(f"Training: {grid_s:.0f} s in {n_grid} grid runs and {trial_s:.0f} s in {n_trials} search trials "
                 f"(each job's start-up, data loading and tracking excluded).")  # fmt: skip
    if wall_s and cores:
        lines.append(f"Workflow wall time {wall_s:.0f} s on {cores} cores: efficiency (training seconds / (wall x "
                     f"cores)) {(grid_s + trial_s) / (wall_s * cores):.0%}; all jobs' CPU seconds / (wall x cores) "
                     f"{all_cpus / (wall_s * cores):.0%}.")  # fmt: skip
    text = "\n".join(lines)
    out = study_folder(workdir) / "results" / "benchmarks" / "profile.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--wall-seconds", type=float, help="the workflow's wall time, if this script did not run it")
    parser.add_argument("--profile-cores", type=int, help="its cores, likewise")
    args, snakemake_args = parser.parse_known_args()
    if not args.report_only:
        seconds = run(args.workdir, args.configfile, snakemake_args or ["--cores", "2"])
        print(f"whole workflow: {seconds:.0f} s")
    print(report(args.workdir, args.wall_seconds, args.profile_cores))


if __name__ == "__main__":
    main()
