"""Minibatch training with early stopping, learning-rate schedules and a per-epoch callback."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .network import Network
from .optim import Optimizer

Array = np.ndarray


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite; ``history`` holds what was recorded up to then."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """Everything a training run records."""

    iteration_loss: list[float] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = float("nan")
    stop_reason: str = ""
    wall_time: float = 0.0

    PER_EPOCH = ("epoch", "train_loss", "train_acc", "val_acc", "lr", "epoch_time")

    def to_arrays(self) -> dict[str, Array]:
        """Arrays for an ``.npz`` (no objects, so no pickle is needed to read them back)."""
        out = {"iteration_loss": np.asarray(self.iteration_loss, dtype=np.float64)}
        for key in self.PER_EPOCH:
            out[key] = np.asarray(getattr(self, key), dtype=np.int64 if key == "epoch" else np.float64)
        out["best_epoch"] = np.array(self.best_epoch)
        out["best_val_acc"] = np.array(self.best_val_acc)
        out["stop_reason"] = np.array(self.stop_reason)
        out["wall_time"] = np.array(self.wall_time)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, Array]) -> History:
        """Inverse of ``to_arrays``."""
        h = cls(iteration_loss=[float(v) for v in arrays["iteration_loss"]])
        for key in cls.PER_EPOCH:
            setattr(h, key, [int(v) if key == "epoch" else float(v) for v in arrays[key]])
        h.best_epoch = int(arrays["best_epoch"])
        h.best_val_acc = float(arrays["best_val_acc"])
        h.stop_reason = str(arrays["stop_reason"])
        h.wall_time = float(arrays["wall_time"])
        return h


# ----------------------------------------------------------------------------- schedules


def make_schedule(kind: str = "constant", **options: float) -> Callable[[float, int], float]:
    """A function ``(base_lr, epoch) -> lr`` for epochs counted from 1.

    ``constant``; ``step`` (``step_size`` epochs, factor ``gamma``);
    ``exponential`` (factor ``gamma`` every epoch).
    """
    if kind == "constant":
        if options:
            raise ValueError(f"constant schedule takes no options, got {sorted(options)}")
        return lambda base, epoch: base
    gamma = float(options.pop("gamma", 0.5 if kind == "step" else 0.95))
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"{kind} schedule: gamma must lie in (0, 1], got {gamma}")
    if kind == "step":
        step_size = int(options.pop("step_size", 10))
        if step_size < 1:
            raise ValueError(f"step schedule: step_size must be >= 1, got {step_size}")
        schedule = lambda base, epoch: base * gamma ** ((epoch - 1) // step_size)  # noqa: E731
    elif kind == "exponential":
        schedule = lambda base, epoch: base * gamma ** (epoch - 1)  # noqa: E731
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose constant, step or exponential")
    if options:
        raise ValueError(f"{kind} schedule: unknown options {sorted(options)}")
    return schedule


# ----------------------------------------------------------------------------- trainer

EpochCallback = Callable[[dict[str, Any]], Any]


class Trainer:
    """Trains a Network with an Optimizer.

    Each epoch visits every training sample once, in an order shuffled by a
    seeded Generator.  After each epoch the validation accuracy is measured;
    training stops after ``patience`` epochs without a strictly better value
    (None or 0 turns early stopping off) or at ``max_epochs``, and the best
    parameters are restored.  ``callback(record)`` runs after every epoch; a
    truthy return value stops training, and any exception it raises propagates
    (which is how a pruner aborts a trial).
    """

    def __init__(
        self,
        model: Network,
        optimizer: Optimizer,
        *,
        batch_size: int = 100,
        max_epochs: int = 100,
        patience: int | None = 3,
        seed: int = 0,
        schedule: Callable[[float, int], float] | None = None,
        callback: EpochCallback | None = None,
        train_eval_samples: int | None = 10_000,
        restore_best: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        if patience is not None and patience < 0:
            raise ValueError(f"patience must be >= 0 or None, got {patience}")
        self.model, self.optimizer = model, optimizer
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.schedule = schedule
        self.callback = callback
        self.train_eval_samples = train_eval_samples
        self.restore_best = restore_best
        self.base_lr = optimizer.lr
        shuffle_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        self.shuffle_rng = np.random.Generator(np.random.PCG64(shuffle_seq))
        self.dropout_rng = np.random.Generator(np.random.PCG64(dropout_seq))
        self.history = History()

    def train_epoch(self, x: Array, y: Array) -> Array:
        """One pass over ``(x, y)`` in shuffled minibatches; returns the loss of each iteration.

        Raises DivergenceError at the first non-finite loss.
        """
        n = len(x)
        order = self.shuffle_rng.permutation(n)
        losses = np.empty((n + self.batch_size - 1) // self.batch_size)
        model, optimizer, rng = self.model, self.optimizer, self.dropout_rng
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging loss is reported below instead
            for i, start in enumerate(range(0, n, self.batch_size)):
                idx = order[start : start + self.batch_size]
                loss, grads = model.loss_and_grads(x[idx], y[idx], rng)
                if not math.isfinite(loss):
                    self.history.iteration_loss.extend(losses[:i].tolist())
                    self.history.iteration_loss.append(loss)
                    raise DivergenceError(
                        f"training loss became {loss} at epoch {len(self.history.epoch) + 1}, "
                        f"iteration {i + 1} (learning rate {optimizer.lr:g})",
                        self.history,
                    )
                optimizer.step(model.params, grads)
                losses[i] = loss
        return losses

    def fit(self, x_train: Array, y_train: Array, x_val: Array, y_val: Array) -> History:
        """Train until early stopping or ``max_epochs``; returns (and keeps) the History."""
        if len(x_train) != len(y_train) or len(x_val) != len(y_val):
            raise ValueError("inputs and labels differ in length")
        if len(x_train) == 0 or len(x_val) == 0:
            raise ValueError("training and validation sets must not be empty")
        dtype = self.model.dtype
        x_train, x_val = np.asarray(x_train, dtype=dtype), np.asarray(x_val, dtype=dtype)
        y_train, y_val = np.asarray(y_train, dtype=np.int64), np.asarray(y_val, dtype=np.int64)
        if self.train_eval_samples and self.train_eval_samples < len(x_train):
            pick = np.sort(self.shuffle_rng.choice(len(x_train), self.train_eval_samples, replace=False))
            x_eval, y_eval = x_train[pick], y_train[pick]
        else:
            x_eval, y_eval = x_train, y_train
        h = self.history
        best_state = None
        stale = 0
        start = time.perf_counter()
        try:
            for epoch in range(1, self.max_epochs + 1):
                if self.schedule is not None:
                    self.optimizer.lr = self.schedule(self.base_lr, epoch)
                t0 = time.perf_counter()
                losses = self.train_epoch(x_train, y_train)
                h.iteration_loss.extend(losses.tolist())
                h.epoch.append(epoch)
                h.train_loss.append(float(losses.mean()))
                h.train_acc.append(self.model.evaluate(x_eval, y_eval))
                h.val_acc.append(self.model.evaluate(x_val, y_val))
                h.lr.append(self.optimizer.lr)
                h.epoch_time.append(time.perf_counter() - t0)
                if not h.best_epoch or h.val_acc[-1] > h.best_val_acc:
                    h.best_epoch, h.best_val_acc = epoch, h.val_acc[-1]
                    best_state = self.model.state() if self.restore_best else None
                    stale = 0
                else:
                    stale += 1
                record = {key: getattr(h, key)[-1] for key in History.PER_EPOCH}
                record.update(best_epoch=h.best_epoch, best_val_acc=h.best_val_acc)
                if self.callback is not None and self.callback(record):
                    h.stop_reason = "callback"
                    break
                if self.patience and stale >= self.patience:
                    h.stop_reason = "early_stopping"
                    break
            else:
                h.stop_reason = "max_epochs"
        except DivergenceError:
            h.stop_reason = "diverged"
            raise
        finally:
            h.wall_time = time.perf_counter() - start
        if best_state is not None:
            self.model.load_state(best_state)
        return h
