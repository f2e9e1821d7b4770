"""After a failed run on SLURM: name each job that SLURM stopped for exceeding its memory or time limit, with
the rule, the resource, its value and where to raise it.

The Snakemake SLURM plugin says little about it (for a group job only ``Error in group grid``), so the
Snakefile's ``onerror`` calls :func:`explain` with the run's log. It takes every SLURM job the run
submitted (``... submitted with SLURM jobid 42 (log: ...)``), asks SLURM for its state and limits
(``scontrol show job``, which knows finished jobs for MinJobAge) and reads what slurmstepd wrote in the job's
log. For each job stopped for memory or time it prints one line, e.g.

    nnstudy: rule train (SLURM job 42) exceeded its memory, mem_mb=60: raise it under set-resources: train:
    in workflow/profiles/slurm/config.yaml (or --set-resources train:mem_mb=N), then run the same command again.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PROFILE = "workflow/profiles/slurm/config.yaml"
RESOURCES = {"OUT_OF_MEMORY": ("memory", "mem_mb"), "TIMEOUT": ("time limit", "runtime")}
# What slurmstepd writes into the job's log when it stops a job; the state may just say FAILED or CANCELLED
# (without cgroups, a job over its memory is killed by the accounting poller and ends FAILED)
SIGNS = {"OUT_OF_MEMORY": re.compile(r"exceeded (?:job )?memory limit|oom-kill", re.I),
         "TIMEOUT": re.compile(r"DUE TO TIME LIMIT")}  # fmt: skip
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)")


def job_info(job_id: str) -> dict[str, str]:
    """State, mem_mb and runtime (minutes) of a job SLURM still knows, else nothing."""
    try:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    if m := re.search(r"JobState=(\w+)", out):
        found["state"] = m[1]
    if m := re.search(r"MinMemory(?:Node|CPU)=(\d+)([MG])", out):
        found["mem_mb"] = str(int(m[1]) * (1024 if m[2] == "G" else 1))
    if m := re.search(r"TimeLimit=(?:(\d+)-)?(\d+):(\d+):(\d+)", out):
        found["runtime"] = str((int(m[1] or 0) * 24 + int(m[2])) * 60 + int(m[3]))
    return found


def read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def stopped_jobs(log_text: str, info=job_info) -> list[tuple[str, str, str, dict[str, str]]]:
    """(rules, SLURM job id, OUT_OF_MEMORY or TIMEOUT, job info) of each submitted job stopped for a limit."""
    found = []
    for job_id, slurm_log in dict(SUBMITTED.findall(log_text)).items():
        details = info(job_id)
        text = read(slurm_log)
        if details.get("state") in RESOURCES:
            why = details["state"]
        else:
            why = next((name for name, sign in SIGNS.items() if sign.search(text)), None)
        if why:
            found.append((", ".join(job_rules(slurm_log, log_text)), job_id, why, details))
    return found


def job_rules(slurm_log: str, log_text: str) -> list[str]:
    """The rules of a SLURM job, from its log folder: slurm_logs/rule_<rule>/... or
    slurm_logs/group_<group>_<rule>_<rule>.../ (the rules that the run's log names)."""
    m = re.search(r"slurm_logs/(rule|group)_([\w-]+)/", slurm_log)
    if not m:
        return ["?"]
    if m[1] == "rule":
        return [m[2]]
    known = set(re.findall(r"^\s*(?:local)?rule ([\w-]+):", log_text, re.M))
    return sorted(r for r in known if re.search(rf"_{re.escape(r)}(_|$)", m[2])) or [m[2]]


def explain(log_files) -> list[str]:
    """One message per job that SLURM stopped for memory or time; printed, and returned for the tests.
    ``log_files``: the run's log file, or a list of them (what Snakemake's ``onerror`` passes)."""
    files = [log_files] if isinstance(log_files, str | Path) else list(log_files or [])
    messages = []
    for rules, job_id, why, details in stopped_jobs("".join(read(f) for f in files)):
        what, resource = RESOURCES[why]
        setting = f"{resource}={details[resource]}" if resource in details else resource
        unit = " (minutes)" if resource == "runtime" else ""
        rule = rules.split(", ")[0]
        messages.append(
            f"nnstudy: rule {rules} (SLURM job {job_id}) exceeded its {what}, {setting}{unit}: raise it under "
            f"set-resources: {rule}: in {PROFILE} (or --set-resources {rule}:{resource}=N), "
            "then run the same command again."
        )
    for message in messages:
        print(message, flush=True)
    return messages
