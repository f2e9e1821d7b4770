"""Trainer: early stopping, restoring the best weights, schedules, divergence, determinism, learning."""

import numpy as np
import pytest
from conftest import require_shared_mnist

from nnlib import SGD, Adam, DivergenceError, History, MLPSpec, Network, Trainer, make_schedule


def blobs(n=300, d=20, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 3
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y


class ScriptedValidation(Network):
    """A real network whose validation accuracy follows a script (training still runs)."""

    def __init__(self, spec, script, n_val):
        super().__init__(spec, seed=0)
        self.script, self.n_val = list(script), n_val

    def evaluate(self, x, y, batch_size=2000):
        return self.script.pop(0) if len(x) == self.n_val else 0.5


def test_early_stopping_stops_after_patience_and_restores_best():
    x, y = blobs()
    xv, yv = blobs(n=37, seed=1)
    script = [0.50, 0.60, 0.70, 0.65, 0.70, 0.69, 0.90, 0.95]
    net = ScriptedValidation(MLPSpec(input_dim=20, hidden=(8,), classes=3), script, len(xv))
    snapshots = {}
    trainer = Trainer(
        net,
        SGD(0.05),
        batch_size=32,
        max_epochs=50,
        patience=3,
        seed=0,
        callback=lambda rec: snapshots.__setitem__(rec["epoch"], net.state()),
    )
    h = trainer.fit(x, y, xv, yv)
    assert h.epoch == [1, 2, 3, 4, 5, 6]  # epoch 3 is best; 4, 5, 6 bring no strict gain
    assert h.best_epoch == 3 and h.best_val_acc == 0.70 and h.stop_reason == "early_stopping"
    for key, value in snapshots[3].items():
        np.testing.assert_array_equal(net.state()[key], value)
    assert not np.array_equal(snapshots[6]["param/fc1.w"], snapshots[3]["param/fc1.w"])


def test_max_epochs_and_callback_stop():
    x, y = blobs()
    h = Trainer(Network(MLPSpec(input_dim=20, hidden=(8,), classes=3)), Adam(0.01), max_epochs=2, patience=None).fit(
        x, y, x, y
    )
    assert h.stop_reason == "max_epochs" and len(h.val_acc) == 2
    assert len(h.iteration_loss) == 2 * 3  # 300 samples, batch 100
    h = Trainer(
        Network(MLPSpec(input_dim=20, hidden=(8,), classes=3)),
        Adam(0.01),
        max_epochs=9,
        callback=lambda rec: rec["epoch"] == 2,
    ).fit(x, y, x, y)
    assert h.stop_reason == "callback" and h.epoch == [1, 2]


def test_minibatches_cover_every_sample_once_per_epoch():
    x, y = blobs(n=250)
    seen = []
    net = Network(MLPSpec(input_dim=20, hidden=(8,), classes=3))
    original = net.loss_and_grads

    def spy(xb, yb, rng=None):
        seen.append(xb[:, 0].copy())
        return original(xb, yb, rng)

    net.loss_and_grads = spy
    Trainer(net, SGD(0.01), batch_size=64, seed=3).train_epoch(x, y)
    assert [len(s) for s in seen] == [64, 64, 64, 58]
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(x[:, 0]))


def test_schedules():
    step = make_schedule("step", step_size=2, gamma=0.5)
    assert [step(1.0, e) for e in range(1, 6)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    exp = make_schedule("exponential", gamma=0.9)
    assert exp(2.0, 3) == pytest.approx(2.0 * 0.81)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("cosine")
    x, y = blobs()
    h = Trainer(
        Network(MLPSpec(input_dim=20, hidden=(8,), classes=3)), SGD(0.1), max_epochs=3, patience=None, schedule=step
    ).fit(x, y, x, y)
    assert h.lr == [0.1, 0.1, 0.05]


def test_divergence_raises_with_history():
    x, y = blobs()
    trainer = Trainer(Network(MLPSpec(input_dim=20, hidden=(8,), classes=3)), SGD(1e6), max_epochs=20)
    with pytest.raises(DivergenceError, match="training loss became") as info:
        trainer.fit(x, y, x, y)
    h = info.value.history
    assert h.stop_reason == "diverged" and not np.isfinite(h.iteration_loss[-1])


def test_same_seed_gives_identical_history_and_history_round_trip():
    x, y = blobs()

    def run(seed):
        net = Network(MLPSpec(input_dim=20, hidden=(16,), classes=3, batchnorm=True, dropout=0.5), seed=seed)
        return Trainer(net, Adam(0.01), batch_size=32, max_epochs=4, patience=None, seed=seed).fit(x, y, x, y)

    a, b, c = run(1), run(1), run(2)
    assert a.iteration_loss == b.iteration_loss and a.val_acc == b.val_acc
    assert a.iteration_loss != c.iteration_loss
    back = History.from_arrays(a.to_arrays())
    assert back.iteration_loss == a.iteration_loss and back.best_epoch == a.best_epoch
    assert back.stop_reason == a.stop_reason


def test_seed_network_learns_real_mnist():
    from nnstudy.mnist import read_idx

    folder = require_shared_mnist()
    images = read_idx(folder / "train-images-idx3-ubyte.gz")[:6000].reshape(-1, 784).astype(np.float32) / 255
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")[:6000].astype(np.int64)
    net = Network(MLPSpec(), seed=0)
    h = Trainer(net, Adam(1e-3), batch_size=100, max_epochs=8, patience=3, seed=0).fit(
        images[:5000], labels[:5000], images[5000:], labels[5000:]
    )
    assert h.best_val_acc >= 0.90, h.val_acc  # speed is measured by benchmarks/, never by a timed test


def test_seed_k_gives_every_cell_the_same_start_and_minibatch_order(monkeypatch):
    """The pairing the claims rest on: with seed k, every cell of both arms (SGD or Adam, with or without
    BN and dropout) starts from the same weights where the shapes match and sees the same minibatches in the
    same order; another seed gives others."""
    from nnstudy.config import Cell
    from nnstudy.training import TrainSettings, train_cell

    rng = np.random.default_rng(0)
    x, y = rng.random((256, 784), dtype=np.float32), rng.integers(0, 10, 256)
    data = {"x_train": x, "y_train": y, "x_val": x[:64], "y_val": y[:64]}
    settings = TrainSettings(hidden=(16,), batch_size=32, max_epochs=2, patience=0, train_eval_samples=64)
    original = Network.loss_and_grads

    def recording(self, xb, yb, rng=None):  # kept on the network itself (an id() may be reused)
        record = self.__dict__.setdefault("seen", {"start": {k: v.copy() for k, v in self.params.items()},
                                                   "batches": []})  # fmt: skip
        record["batches"].append(xb[:, :8].sum(axis=1).round(4).tolist())  # which rows, in which order
        return original(self, xb, yb, rng)

    monkeypatch.setattr(Network, "loss_and_grads", recording)

    def run(cell: Cell, seed: int) -> dict:
        return train_cell(cell, 0.01, data, settings, seed).net.seen

    cells = [Cell("sgd", False, 0.0), Cell("sgd", True, 0.5), Cell("adam", True, 0.0),
             Cell("adam", False, 0.5, arm="replication")]  # fmt: skip
    records = [run(cell, 3) for cell in cells]
    reference = records[0]
    for record in records[1:]:
        assert record["batches"] == reference["batches"]
        shared = [k for k in reference["start"] if k in record["start"]]
        assert shared and all(reference["start"][k].shape == record["start"][k].shape for k in shared)
        for k in shared:
            np.testing.assert_array_equal(record["start"][k], reference["start"][k])
    other = run(cells[0], 4)
    assert other["batches"] != reference["batches"]
    first = next(k for k in reference["start"] if reference["start"][k].ndim == 2)  # the first weight matrix
    assert not np.array_equal(other["start"][first], reference["start"][first])


@pytest.mark.parametrize(
    ("seeds", "results", "models", "problem"),
    [
        ([1, 2], ["g/c/seed1/result.json"], ["g/c/seed1/model.npz", "g/c/seed2/model.npz"], "2 seeds, 1 results"),
        ([1, 2], ["g/c/seed2/result.json", "g/c/seed1/result.json"], ["g/c/seed1/m", "g/c/seed2/m"], "seed 1 paired"),
    ],
)
def test_a_cell_job_refuses_seeds_and_paths_that_do_not_pair(tmp_path, seeds, results, models, problem):
    """A cell's job writes each seed's files under seed<k>/: a mismatch stops it before any data is read."""
    from nnstudy.grid import run_grid_cell

    with pytest.raises(ValueError, match=problem):
        run_grid_cell(cell_name="sgd-bn0-dp0", seeds=seeds, dataset_path=tmp_path / "missing.npz", best_file=None,
                      fallback_lr={"sgd": 0.1}, settings=None, tracking={}, result_paths=results,
                      model_paths=models)  # fmt: skip
