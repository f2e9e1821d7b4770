"""One training of one grid cell, shared by the grid jobs and the search trials, and its MLflow record."""

from __future__ import annotations

import logging
import math
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnlib import CNNSpec, DivergenceError, History, MLPSpec, Network, Trainer, make_optimizer, make_schedule

from .config import Cell
from .io import atomic_write_json
from .tracking import RunLogger

log = logging.getLogger("nnstudy.training")


@dataclass(frozen=True)
class TrainSettings:
    """What a training needs besides its cell (from ``nnstudy.config.train_options``)."""

    arch: str = "mlp"
    conv: tuple[tuple[int, int], ...] = ((8, 5), (16, 5))
    batch_size: int = 100
    max_epochs: int = 100
    patience: int = 3
    hidden: tuple[int, ...] = (100,)
    init: str = "he"
    weight_decay: float = 0.0
    dtype: str = "float32"
    schedule: str = "constant"
    schedule_gamma: float = 0.5
    schedule_step: int = 10
    train_eval_samples: int = 10_000
    adam_beta2: float = 0.999
    collapse_loss_factor: float = 10.0
    collapse_chance_epochs: int = 3
    collapse_chance_margin: float = 0.05
    split_per_seed: bool = False  # each seed draws its own train/validation split (nnstudy.mnist.resplit)
    split_seed: int = 0

    @classmethod
    def from_config(cls, section: dict[str, Any], **overrides: Any) -> TrainSettings:
        values = {**section, **overrides}
        for key, value in values.pop("collapse", {}).items():
            values[f"collapse_{key}"] = value
        values["hidden"] = tuple(values["hidden"])
        if "conv" in values:
            values["conv"] = tuple(tuple(c) for c in values["conv"])
        return cls(**values)

    def spec(self, cell: Cell) -> MLPSpec | CNNSpec:
        shared = {"hidden": self.hidden, "batchnorm": cell.batchnorm, "dropout": cell.dropout, "init": self.init,
                  "dtype": self.dtype, "weight_decay": self.weight_decay}  # fmt: skip
        return CNNSpec(conv=self.conv, **shared) if cell.arch == "cnn" else MLPSpec(**shared)

    def lr_schedule(self):
        if self.schedule == "constant":
            return None
        if self.schedule == "step":
            return make_schedule("step", step_size=self.schedule_step, gamma=self.schedule_gamma)
        return make_schedule(self.schedule, gamma=self.schedule_gamma)


@dataclass
class Outcome:
    """What a training produced: the network (best weights restored), its history and status."""

    net: Network
    history: History
    status: str  # "ok", "diverged" (a non-finite loss) or "collapsed" (see CollapseGuard)
    message: str = ""


class CollapseGuard:
    """A Trainer callback that stops a run that has collapsed without a non-finite loss: an epoch's mean
    training loss above ``loss_factor`` times the first iteration's, or, after ``chance_epochs`` epochs,
    a best validation accuracy still at chance (1/10 + ``chance_margin``)."""

    def __init__(self, history: History, settings: TrainSettings, then=None) -> None:
        self.history, self.settings, self.then = history, settings, then
        self.reason = ""

    def __call__(self, record: dict[str, Any]):
        s, first = self.settings, self.history.iteration_loss[0]
        if record["train_loss"] > s.collapse_loss_factor * first:
            self.reason = (f"collapsed: mean training loss {record['train_loss']:.4g} in epoch {record['epoch']} is "
                           f"over {s.collapse_loss_factor:g}x the first iteration's {first:.4g}")  # fmt: skip
        elif record["epoch"] >= s.collapse_chance_epochs and record["best_val_acc"] <= 0.1 + s.collapse_chance_margin:
            self.reason = (f"collapsed: best validation accuracy {record['best_val_acc']:.4f} after "
                           f"{record['epoch']} epochs is at chance")  # fmt: skip
        if self.reason:
            return True
        return self.then(record) if self.then else None


def train_cell(cell: Cell, lr: float, data: dict, settings: TrainSettings, seed: int, callback=None) -> Outcome:
    """Train ``cell`` at learning rate ``lr``; a diverging loss gives status ``diverged`` and a run that goes
    nowhere status ``collapsed``, not an exception."""
    net = Network(settings.spec(cell), seed=seed)
    trainer = Trainer(
        net,
        make_optimizer(cell.optimizer, lr, **({"beta2": settings.adam_beta2} if cell.optimizer == "adam" else {})),
        batch_size=settings.batch_size,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        seed=seed,
        schedule=settings.lr_schedule(),
        train_eval_samples=settings.train_eval_samples,
    )
    guard = CollapseGuard(trainer.history, settings, callback)
    trainer.callback = guard
    try:
        history = trainer.fit(data["x_train"], data["y_train"], data["x_val"], data["y_val"])
    except DivergenceError as exc:
        return Outcome(net, exc.history, "diverged", str(exc))
    if guard.reason:
        history.stop_reason = "collapsed"
        return Outcome(net, history, "collapsed", guard.reason)
    return Outcome(net, history, "ok")


def finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def history_json(history: History) -> dict[str, Any]:
    """The history as JSON-safe lists (non-finite values become null)."""
    out: dict[str, Any] = {}
    for key, value in asdict(history).items():
        if isinstance(value, list):
            out[key] = [finite_or_none(v) if isinstance(v, float) else v for v in value]
        elif isinstance(value, float):
            out[key] = finite_or_none(value)
        else:
            out[key] = value
    return out


def run_params(cell: Cell, lr: float, settings: TrainSettings, seed: int, dataset_digest: str, git: str) -> dict:
    """Every hyperparameter of a training, for MLflow params."""
    params = {f"train.{k}": v for k, v in asdict(settings).items()}
    params.update(
        arm=cell.arm,
        arch=cell.arch,
        optimizer=cell.optimizer,
        batchnorm=cell.batchnorm,
        dropout=cell.dropout,
        lr=lr,
        seed=seed,
        dataset_digest=dataset_digest,
        git_commit=git,
        numpy=np.__version__,
        python=platform.python_version(),
    )
    return params


def epoch_logger(logger: RunLogger, label: str, then=None):
    """A Trainer callback that writes one line per epoch to the job's log (``tail -f`` it), buffers the
    epoch's metrics in ``logger`` (as ``epoch_*``: the run's plain ``val_acc`` is the best epoch's), and
    then calls ``then``."""

    def callback(record: dict[str, Any]):
        log.info("%s epoch %d: loss %.4f train acc %.4f val acc %.4f lr %.3g (%.1f s)", label, record["epoch"],
                 record["train_loss"], record["train_acc"], record["val_acc"], record["lr"],
                 record["epoch_time"])  # fmt: skip
        logger.log_metrics(
            {
                "epoch_loss": record["train_loss"],
                "epoch_train_acc": record["train_acc"],
                "epoch_val_acc": record["val_acc"],
                "epoch_lr": record["lr"],
                "epoch_seconds": record["epoch_time"],
            },
            step=record["epoch"],
        )
        return then(record) if then else None

    return callback


def summary_metrics(outcome: Outcome, test_acc: float | None) -> dict[str, float]:
    h = outcome.history
    epochs = len(h.epoch)
    metrics = {
        "val_acc": h.best_val_acc,  # of the early-stopped (best-epoch) model, the one that is kept
        "best_val_acc": h.best_val_acc,
        "epochs": epochs,
        "epochs_to_best": h.best_epoch,
        "wall_time": h.wall_time,
        "time_per_epoch": (sum(h.epoch_time) / epochs) if epochs else float("nan"),
    }
    if test_acc is not None:
        metrics["test_acc"] = test_acc
    return {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}


def write_result(path: str | Path, fields: dict[str, Any], outcome: Outcome, metrics: dict[str, float]) -> dict:
    """The declared result file of a training: identity, status, summary metrics and history."""
    result = {
        **fields,
        "status": outcome.status,
        "message": outcome.message,
        "stop_reason": outcome.history.stop_reason,
        "best_val_acc": finite_or_none(metrics.get("best_val_acc", float("nan"))),
        "test_acc": finite_or_none(metrics.get("test_acc", float("nan"))),
        "epochs": len(outcome.history.epoch),
        "epochs_to_best": outcome.history.best_epoch,
        "wall_time": outcome.history.wall_time,
        "time_per_epoch": finite_or_none(metrics.get("time_per_epoch", float("nan"))),
        "n_params": outcome.net.n_params,
        "history": history_json(outcome.history),
    }
    atomic_write_json(path, result)
    return result
