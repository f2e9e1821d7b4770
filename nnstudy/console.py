"""A console a person can follow: one short line when a job starts and one when it ends, naming the cell or
study, with a running count and an estimate of the time left from the jobs' measured costs.

Used by the Snakemake logger plugin ``snakemake_logger_plugin_nnstudy`` (``workflow/logger/``), which the
default profile turns on; everything it does not handle (errors, failed jobs' logs, the plan) keeps
Snakemake's own formatting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

#: seconds per job of each rule before one of them has finished in this run: the default study's medians
#: on the 2-core AMD EPYC Zen 4 (docs/performance.md; a BP-network training is one seed). Any rule without
#: an entry takes the median of the jobs finished so far.
PRIOR_SECONDS = {
    "train": 9.0, "train_cnn": 65.0, "search_round": 39.0, "search_setup": 2.0, "search_export": 2.0,
    "tables": 330.0, "figures": 19.0, "lab_report": 20.0, "model_figures": 9.0, "recogniser": 8.0,
    "register_models": 6.0, "gui_screenshot": 5.0, "mlflow_store": 3.0, "gradient_check": 2.0,
    "download_data": 1.0, "prepare_dataset": 1.0, "dataset_card": 1.0, "all": 0.0,
}  # fmt: skip
#: how many of a rule's most recent jobs its expected cost is taken from
RECENT = 8
#: wildcards shown with their name (``seed3``); the others by value alone (a cell, a study, a language)
NAMED = ("seed", "round", "part")


def job_label(rule: str, wildcards: dict[str, str] | None) -> str:
    """``train rep-sgd-bn0-dp0 seed3``: the rule, then what the job is about."""
    parts = [f"{key}{value}" if key in NAMED else str(value) for key, value in (wildcards or {}).items()]
    return " ".join([rule, *parts])


def clock_text(seconds: float) -> str:
    """``12:04`` or ``1:02:09``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class Progress:
    """What has been planned, started and finished, and how long each rule's jobs took."""

    clock: Callable[[], float] = time.monotonic
    cores: int = 1
    planned: dict[str, int] = field(default_factory=dict)
    running: dict[int, tuple[str, str, float]] = field(default_factory=dict)  # jobid -> rule, label, start
    took: dict[str, list[float]] = field(default_factory=dict)
    started_rules: dict[str, int] = field(default_factory=dict)
    done: int = 0

    def __post_init__(self) -> None:
        self.begun = self.clock()

    @property
    def total(self) -> int:
        return sum(self.planned.values())

    def expected(self, rule: str) -> float:
        """Seconds a job of ``rule`` is expected to take: the median of this run's last ``RECENT`` finished
        ones (priorities start the longest jobs of a rule first, so the recent ones are the better guide to
        those still waiting), else the prior, else the median of every job finished so far."""
        if self.took.get(rule):
            return median(self.took[rule][-RECENT:])
        if rule in PRIOR_SECONDS:
            return PRIOR_SECONDS[rule]
        everything = [seconds for values in self.took.values() for seconds in values]
        return median(everything) if everything else 5.0

    def seconds_left(self) -> float:
        """The work not done, in seconds of one core, spread over the cores."""
        now = self.clock()
        waiting = sum(max(0, n - self.started_rules.get(rule, 0)) * self.expected(rule)
                      for rule, n in self.planned.items())  # fmt: skip
        running = sum(max(0.0, self.expected(rule) - (now - start)) for rule, _, start in self.running.values())
        return (waiting + running) / max(1, self.cores)

    def start(self, jobid: int, rule: str, wildcards: dict[str, str] | None) -> str:
        label = job_label(rule, wildcards)
        self.running[jobid] = (rule, label, self.clock())
        self.started_rules[rule] = self.started_rules.get(rule, 0) + 1
        return f"> {label}"

    def finish(self, jobid: int) -> str | None:
        if jobid not in self.running:
            return None
        rule, label, start = self.running.pop(jobid)
        seconds = self.clock() - start
        self.took.setdefault(rule, []).append(seconds)
        self.done += 1
        elapsed = clock_text(self.clock() - self.begun)
        left = "" if self.done >= self.total else f" ~{clock_text(self.seconds_left())} left"
        return f"  {self.done}/{self.total} {elapsed}{left}  {label} {seconds:.0f}s"


def end_rate_limiter_timers() -> int:
    """Cancel the timers still pending in Snakemake's process once the workflow has ended; returns how many.

    Snakemake's job-rate limiter (``--max-jobs-per-timespan``) starts a ``threading.Timer`` of its timespan
    after every scheduling pass; they are not daemon threads, so the process would wait for the last ones
    before exiting: up to the timespan, which the profiles lengthen from 1 s to 10 s to cut Snakemake's own
    CPU time (docs/performance.md). Called from the Snakefile's onsuccess and onerror."""
    timers = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    for timer in timers:
        timer.cancel()
    return len(timers)
