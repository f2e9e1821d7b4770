"""Measure every rule's real peak memory, wall time and CPU use on a study, for the SLURM profile's figures.

Runs ``snakemake`` on the given config in a work folder with a ``sitecustomize`` hook on PYTHONPATH. Each
rule here is a ``script:`` rule, which Snakemake runs as its own Python process; at that process's exit the
hook appends one line to a JSON-lines file: the rule, its wildcards, the wall time since interpreter start,
the CPU time, and the peak resident set size of the process and of its children (``getrusage``'s
``ru_maxrss``, exact, no sampling). Then it prints one row per rule: jobs, max/median wall time, max RSS,
CPU/wall.

    NNSTUDY_MNIST_MIRRORS=/work/shared/mnist python benchmarks/rule_resources.py /tmp/measure --cores 2
    python benchmarks/rule_resources.py /tmp/measure --report-only      # the table again
"""

from __future__ import annotations

import argparse
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
    return time.monotonic() - start


def report(workdir: Path) -> str:
    rows = [json.loads(line) for line in (workdir / "usage.jsonl").read_text().splitlines() if line.strip()]
    by_rule: dict[str, list[dict]] = {}
    for row in rows:
        by_rule.setdefault(row["rule"], []).append(row)
    header = "| rule | jobs | wall max (s) | wall median (s) | peak RSS (MB) | CPU/wall | declared mem_mb, runtime |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---|"]
    for rule, jobs in sorted(by_rule.items()):
        walls = [j["wall_s"] for j in jobs]
        cpu = sum(j["cpu_s"] for j in jobs) / max(sum(walls), 1e-9)
        rss = max(j["max_rss_mb"] for j in jobs)
        declared = f"{jobs[0]['mem_mb']}, {jobs[0]['runtime']}"
        lines.append(f"| {rule} | {len(jobs)} | {max(walls):.1f} | {statistics.median(walls):.1f} | {rss:.0f} | "
                     f"{cpu:.2f} | {declared} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--report-only", action="store_true")
    args, snakemake_args = parser.parse_known_args()
    if not args.report_only:
        seconds = run(args.workdir, args.configfile, snakemake_args or ["--cores", "2"])
        print(f"whole workflow: {seconds:.0f} s")
    print(report(args.workdir))


if __name__ == "__main__":
    main()
