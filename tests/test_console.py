"""The console of a run (nnstudy.console, through the logger plugin the default profile turns on)."""

from __future__ import annotations

import re
import threading

from nnstudy.console import Progress, clock_text, end_rate_limiter_timers, job_label


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_job_is_named_by_its_rule_and_what_it_is_about():
    assert job_label("train", {"cell": "rep-sgd-bn0-dp0", "seed": "3"}) == "train rep-sgd-bn0-dp0 seed3"
    assert (
        job_label("search_round", {"study": "lr-adam", "round": "1", "part": "0"})
        == "search_round lr-adam round1 part0"
    )
    assert job_label("tables", {}) == "tables" and job_label("all", None) == "all"
    assert clock_text(59.6) == "1:00" and clock_text(3723) == "1:02:03" and clock_text(-5) == "0:00"


def test_the_time_left_follows_the_jobs_measured_costs():
    """Before a rule's first job ends its prior is used; after, the median of its own jobs; the work left is
    spread over the cores; running jobs count for what they are expected still to take."""
    clock = FakeClock()
    progress = Progress(clock=clock, cores=2, planned={"train": 4, "tables": 1})
    assert progress.seconds_left() == (4 * 9.0 + 330.0) / 2  # the priors
    assert progress.start(1, "train", {"cell": "sgd-bn0-dp0", "seed": "1"}) == "> train sgd-bn0-dp0 seed1"
    progress.start(2, "train", {"cell": "sgd-bn0-dp0", "seed": "2"})
    clock.now = 20.0
    line = progress.finish(1)
    assert line == "  1/5 0:20 ~3:05 left  train sgd-bn0-dp0 seed1 20s"  # (2 x 20 + 330) / 2 = 185 s
    assert progress.seconds_left() == (2 * 20.0 + 330.0 + 0.0) / 2  # job 2 ran 20 s of its expected 20
    assert progress.finish(99) is None  # a job it never saw start
    for jobid in (3, 4):
        progress.start(jobid, "train", {"seed": str(jobid)})
    progress.start(5, "tables", {})
    clock.now = 30.0
    for jobid in (2, 3, 4):
        progress.finish(jobid)
    assert progress.finish(5).startswith("  5/5 0:30  tables")  # no estimate once everything is done


def test_the_session_studys_console_is_short_and_names_each_job(study):
    """One short line when a job starts and one when it ends, no path lists, the count in the end lines."""
    workdir, _ = study
    console = (workdir / "console.txt").read_text()
    lines = console.splitlines()
    starts = [line for line in lines if line.startswith("> ")]
    ends = [line for line in lines if re.match(r"^  \d+/\d+ \d+:\d\d", line)]
    trainings = sum(1 for line in starts if line.startswith(("> train ", "> train_cnn ")))
    assert trainings == len(list(workdir.glob("results/grid/*/seed*/result.json")))
    assert len(starts) == len(ends) and re.match(r"^  (\d+)/\1 ", ends[-1])
    assert max(len(line) for line in lines if not line.startswith("  every run:")) < 200
    assert "output:" not in console and "Select jobs to execute" not in console
    assert len(console.encode()) < 120 * len(starts) + 4000  # a few lines of plan and closing message besides


def test_the_estimate_follows_a_rules_recent_jobs():
    """The longest trainings start first: once shorter ones follow, the estimate follows them."""
    clock = FakeClock()
    progress = Progress(clock=clock, cores=1, planned={"train": 30})
    for jobid in range(20):
        progress.start(jobid, "train", {"seed": str(jobid)})
        clock.now += 40.0 if jobid < 10 else 10.0
        progress.finish(jobid)
    assert progress.expected("train") == 10.0 and progress.seconds_left() == 10 * 10.0


def test_job_logs_time_each_line_and_carry_no_experimental_warning(study):
    """A job's log says when each epoch ended, Optuna's ExperimentalWarning for the objective's name is not
    repeated in every search's log, and MLflow's progress bars are not drawn into the logs."""
    workdir, _ = study
    logs = list(workdir.glob("results/logs/**/*.log"))
    epochs = [line for log in workdir.glob("results/logs/grid/*/*.log") for line in log.read_text().splitlines()
              if " epoch 1: " in line]  # fmt: skip
    assert epochs and all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO nnstudy\.", line) for line in epochs)
    assert not [log for log in logs if "ExperimentalWarning" in log.read_text()]
    # a log file is read in an editor or with less: no progress bar's carriage returns, no terminal colours
    assert not [log for log in logs if b"\r" in log.read_bytes() or b"\x1b[" in log.read_bytes()]


def test_pending_rate_limiter_timers_are_cancelled_at_the_end():
    """Snakemake's rate limiter leaves a timer of its timespan (10 s in the profiles) pending after its last
    pass; the Snakefile's onsuccess/onerror cancel them, so the process exits without waiting for them."""
    fired = threading.Event()
    timer = threading.Timer(600, fired.set)
    timer.start()
    assert end_rate_limiter_timers() >= 1
    timer.join(timeout=60)  # a bound against a hang: a cancelled timer ends at once
    assert not timer.is_alive() and not fired.is_set()
