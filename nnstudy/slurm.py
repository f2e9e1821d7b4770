"""After a failed run on SLURM: name each job that SLURM stopped for exceeding its memory or time limit, with
the rule, the resource, its value and where to raise it.

The Snakemake SLURM plugin reports such a job as ``SLURM-job '42' failed, SLURM status is: 'OUT_OF_MEMORY'``
(or ``'TIMEOUT'``) under ``Error in rule train:``. The Snakefile's ``onerror`` calls :func:`explain` with the
run's log, which turns that into one line per job, e.g.

    nnstudy: rule train (SLURM job 42) exceeded its memory, mem_mb=50: raise it under set-resources: train: in
    workflow/profiles/slurm/config.yaml (or --set-resources train:mem_mb=N), then run the same command again.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PROFILE = "workflow/profiles/slurm/config.yaml"
RESOURCES = {"OUT_OF_MEMORY": ("memory", "mem_mb"), "TIMEOUT": ("time limit", "runtime")}
# What slurmstepd writes into the job's log when it stops a job (the state may just say FAILED or CANCELLED:
# without cgroups, a job over its memory is killed by the accounting poller and ends FAILED)
SIGNS = {"OUT_OF_MEMORY": re.compile(r"exceeded (?:job )?memory limit|oom-kill", re.I),
         "TIMEOUT": re.compile(r"DUE TO TIME LIMIT")}  # fmt: skip
STATUS = re.compile(r"SLURM-job '(\d+)' failed, SLURM status is: '(\w+)'")
TIMESTAMP = re.compile(r"\n(?=\s*\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\])")


def limits(job_id: str) -> dict[str, str]:
    """mem_mb and runtime (minutes) of a job SLURM still remembers (MinJobAge), else nothing."""
    try:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    if m := re.search(r"MinMemory(?:Node|CPU)=(\d+)([MG])", out):
        found["mem_mb"] = str(int(m[1]) * (1024 if m[2] == "G" else 1))
    if m := re.search(r"TimeLimit=(?:(\d+)-)?(\d+):(\d+):(\d+)", out):
        days, hours, minutes = int(m[1] or 0), int(m[2]), int(m[3])
        found["runtime"] = str((days * 24 + hours) * 60 + minutes)
    return found


def cause(status: str, log_text: str, job_id: str) -> str | None:
    """OUT_OF_MEMORY, TIMEOUT, or None: from SLURM's state, else from what slurmstepd wrote in the job's log."""
    if status in RESOURCES:
        return status
    text = ""
    if m := re.search(rf"(\S+/slurm_logs/\S+/{job_id}\.log)", log_text):
        try:
            text += Path(m[1]).read_text(errors="replace")
        except OSError:
            pass
    return next((name for name, sign in SIGNS.items() if sign.search(text)), None)


def failures(log_text: str) -> list[tuple[str, str, str]]:
    """(rule, SLURM job id, cause) of every job the log reports as stopped for memory or time."""
    found = {}
    for block in TIMESTAMP.split(log_text):  # one block per logged event: a job error names its rule(s)
        for m in STATUS.finditer(block):
            if m[1] not in found and (why := cause(m[2], log_text, m[1])):
                rules = set(re.findall(r"Error in rule ([\w-]+):", block))
                rules |= set(re.findall(r"^\s+rule ([\w-]+):$", block, re.M))  # the jobs of a group job
                found[m[1]] = (", ".join(sorted(rules)) or "?", m[1], why)
    return list(found.values())


def explain(log_file: str | Path | None) -> list[str]:
    """One message per job that SLURM stopped for memory or time; printed, and returned for the tests."""
    if not log_file or not Path(log_file).exists():
        return []
    messages = []
    for rule, job_id, status in failures(Path(log_file).read_text(errors="replace")):
        what, resource = RESOURCES[status]
        value = limits(job_id).get(resource)
        setting = f"{resource}={value}" if value else resource
        unit = " (minutes)" if resource == "runtime" else ""
        messages.append(
            f"nnstudy: rule {rule} (SLURM job {job_id}) exceeded its {what}, {setting}{unit}: raise it under "
            f"set-resources: {rule}: in {PROFILE} (or --set-resources {rule}:{resource}=N), "
            "then run the same command again."
        )
    for message in messages:
        print(message, flush=True)
    return messages
