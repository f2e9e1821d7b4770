"""Search and tracking pieces on their own: deterministic proposals and pruning, collapse, filter quoting,
the journal's lock."""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys

import numpy as np
import optuna
import pytest
from conftest import REPO, clean_env, run_bounded, synthetic_digits
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState, create_trial

from nnlib import History
from nnstudy.config import Cell, n_rounds, part_slots, round_parts, round_slots
from nnstudy.search import FrozenReferencePruner, lr_distribution, propose_round, select_best, trials_frame
from nnstudy.tracking import kill_stale_runs, quoted, tag_filter
from nnstudy.training import CollapseGuard, TrainSettings, train_cell

RANGE = (1e-4, 1e-1)


def finished(lr: float, value: float, slot: int, curve: list[float], state=TrialState.COMPLETE):
    return create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None, params={"lr": lr},
        distributions={"lr": lr_distribution(RANGE)}, user_attrs={"slot": slot, "round": 0},
        intermediate_values={e + 1: v for e, v in enumerate(curve)},
    )  # fmt: skip


def test_rounds_and_parts_cover_every_slot_once():
    search = {"n_trials": 14, "batch_size": 6, "workers": 4}
    assert n_rounds(search) == 3 and list(round_slots(search, 2)) == [12, 13] and round_parts(search, 2) == 2
    slots = [s for r in range(3) for p in range(round_parts(search, r)) for s in part_slots(search, r, p)]
    assert sorted(slots) == list(range(14))


def test_a_round_is_proposed_from_earlier_rounds_alone():
    first = propose_round([], 6, RANGE, seed=0, round_=0, n_startup=6)
    assert first == propose_round([], 6, RANGE, seed=0, round_=0, n_startup=6)
    assert len(set(first)) == 6 and all(RANGE[0] <= lr <= RANGE[1] for lr in first)
    assert first != propose_round([], 6, RANGE, seed=1, round_=0, n_startup=6)
    history = [finished(lr, 0.9 - abs(np.log10(lr) + 2.5) / 10, slot, [0.5]) for slot, lr in enumerate(first)]
    second = propose_round(history, 6, RANGE, seed=0, round_=1, n_startup=6)
    assert second == propose_round(list(history), 6, RANGE, seed=0, round_=1, n_startup=6)
    assert second != first and len(set(second)) == 6


def test_pruning_compares_with_the_frozen_reference_only():
    history = [finished(1e-3, 0.9, 0, [0.5, 0.7, 0.9]), finished(2e-3, 0.8, 1, [0.4, 0.6, 0.8]),
               finished(3e-3, 0.7, 2, [0.3, 0.5, 0.7]), finished(4e-3, None, 3, [0.1], TrialState.PRUNED)]  # fmt: skip
    pruner = FrozenReferencePruner({"n_startup_trials": 3, "n_warmup_steps": 2}, history, lr_distribution(RANGE))
    assert not pruner.should_prune(1e-2, {1: 0.0})  # warm-up: steps below 2 are never pruned
    assert pruner.should_prune(1e-2, {1: 0.5, 2: 0.55})  # below the median 0.6 of the completed trials at step 2
    assert not pruner.should_prune(1e-2, {1: 0.5, 2: 0.65})
    few = FrozenReferencePruner({"n_startup_trials": 4, "n_warmup_steps": 0}, history, lr_distribution(RANGE))
    assert not few.should_prune(1e-2, {1: 0.0, 2: 0.0})  # only 3 completed trials: no pruning yet


def test_best_is_the_highest_completed_slot_and_ties_go_to_the_lowest_slot():
    study = optuna.create_study(direction="maximize")
    for slot, value in ((2, 0.8), (0, 0.8), (1, 0.7)):
        study.add_trial(finished(1e-3 * (slot + 1), value, slot, [value]))
    study.add_trial(finished(5e-3, None, 3, [0.9], TrialState.PRUNED))
    frame = trials_frame(study)
    best = select_best(frame)
    assert int(best["slot"]) == 0 and best["value"] == 0.8
    assert frame.sort_values("slot")["best_so_far"].tolist() == [0.8, 0.8, 0.8, 0.8]  # no gap on pruned rows


def small_data():
    x, y = synthetic_digits(1200, 0)
    x = x.reshape(len(x), -1).astype(np.float32) / 255
    return {"x_train": x[:1000], "y_train": y[:1000], "x_val": x[1000:], "y_val": y[1000:]}


def test_a_finite_but_exploding_loss_is_collapsed_not_ok():
    settings = TrainSettings(hidden=(32,), max_epochs=6, patience=0, train_eval_samples=500)
    outcome = train_cell(Cell("sgd", False, 0.0), 1000.0, small_data(), settings, seed=1)
    assert outcome.status == "collapsed" and "over 10x the first iteration" in outcome.message
    assert outcome.history.stop_reason == "collapsed" and len(outcome.history.epoch) == 1
    healthy = train_cell(Cell("sgd", False, 0.0), 0.1, small_data(), settings, seed=1)
    assert healthy.status == "ok"


def test_accuracy_at_chance_after_n_epochs_is_collapsed():
    history = History(iteration_loss=[2.3])
    guard = CollapseGuard(history, TrainSettings(collapse_chance_epochs=3, collapse_chance_margin=0.05))
    record = {"train_loss": 2.3, "best_val_acc": 0.12}
    assert not guard({**record, "epoch": 2})
    assert guard({**record, "epoch": 3}) and "at chance" in guard.reason
    assert not CollapseGuard(history, TrainSettings())({**record, "best_val_acc": 0.5, "epoch": 9})


@pytest.mark.parametrize("value", ["/tmp/o'brien w", 'say "hi"', "plain"])
def test_tag_filters_quote_any_folder_name(tmp_path, value):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e")
    run = client.create_run(experiment, tags={"workflow": value, "cell": "x"}).info.run_id
    client.create_run(experiment, tags={"workflow": value + "2", "cell": "x"})
    found = client.search_runs([experiment], tag_filter({"workflow": value, "cell": "x"}))
    assert [r.info.run_id for r in found] == [run]
    assert kill_stale_runs(client, experiment, {"workflow": value}) == [run]
    with pytest.raises(ValueError, match="both kinds of quote"):
        quoted('it\'s "both"')


def test_trial_frame_without_slots_is_not_an_error():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    frame = trials_frame(study)
    assert frame["status"].tolist() == ["killed"] and select_best(frame) is None
    assert isinstance(datetime.datetime.fromisoformat(frame["datetime_start"][0]), datetime.datetime)


HOLD_THE_JOURNAL_LOCK = """
import sys, time
from nnstudy.search import open_storage
storage = open_storage("journal", "results/search/lr-adam")  # relative, as in a Snakemake job
storage._backend._lock.acquire()  # what a job inside a journal write holds
print("held", flush=True)
time.sleep(3600)
"""

WRITE_TO_THE_JOURNAL = """
from nnstudy.search import create_study, open_storage
study = create_study(open_storage("journal", "results/search/lr-adam"), "after-the-kill")
study.add_trial(__import__("optuna").trial.create_trial(value=0.5))
print(len(study.trials))
"""


def test_a_writer_killed_inside_a_journal_write_does_not_stop_the_next_one(tmp_path):
    """kill -9 while a job holds the journal's write lock: the resumed job writes at once.  With Optuna's
    default lock (a symlink to a relative path) the next writer waited for ever (seen in CI)."""
    env = {**clean_env(), "PYTHONPATH": str(REPO)}
    with subprocess.Popen([sys.executable, "-c", HOLD_THE_JOURNAL_LOCK], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, text=True) as holder:  # fmt: skip
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    writer = run_bounded([sys.executable, "-c", WRITE_TO_THE_JOURNAL], timeout=300, cwd=tmp_path, env=env)
    assert writer.returncode == 0, writer.stderr[-2000:]
    assert writer.stdout.split() == ["1"]
