"""The pilot: design decisions on seeds that are neither confirmatory nor search seeds, on validation
accuracy only (no test image is scored).

It trains every BP-network cell at the seed report's rates and the CNN with each candidate learning-rate
schedule on ``protocol.pilot.seeds``, then states what the protocol declares from it: the planning sd of the
paired differences (validation accuracy in pp, epochs to best) and the CNN schedule with the higher mean
validation accuracy.  ``snakemake pilot`` runs it; the study itself does not depend on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .claims import COUNT_METRICS, ClaimSpec, paired_differences, parse_claims
from .config import Cell, arch_seeds, train_options
from .io import atomic_write_json, read_json
from .mnist import load_dataset, resplit
from .training import TrainSettings, train_cell


def pilot_jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the cell, its learning rate and its training options: every BP-network cell of the grid at
    the seed report's rate, and the CNN once per candidate schedule."""
    grid, rates = config["grid"], config["protocol"]["replication_lr"]
    jobs: dict[str, dict[str, Any]] = {}
    for opt in grid["optimizers"]:
        for bn in grid["batchnorm"]:
            for dp in grid["dropout"]:
                cell = Cell(opt, bool(bn), float(dp))
                jobs[cell.name] = {"cell": cell, "lr": rates[opt], "options": train_options(config, cell)}
    if config["cnn"]["enabled"]:
        pilot = config["protocol"]["pilot"]
        for opt in config["cnn"]["optimizers"]:
            cell = Cell(opt, False, 0.0, "cnn")
            for schedule in pilot["cnn_schedules"]:
                options = {**train_options(config, cell), "schedule": schedule}
                jobs[f"{cell.name}-{schedule}"] = {"cell": cell, "lr": pilot["cnn_lr"], "options": options}
    return jobs


def run_pilot_job(name: str, job: dict[str, Any], seeds: Iterable[int], dataset_path: str | Path,
                  out_path: str | Path) -> dict[str, Any]:  # fmt: skip
    """Train one pilot cell on each pilot seed; record validation accuracy and epochs, never test accuracy."""
    settings = TrainSettings.from_config(job["options"])
    data = load_dataset(dataset_path, settings.dtype)
    cell: Cell = job["cell"]
    runs = []
    for seed in seeds:
        seeded = resplit(data, int(seed), settings.split_seed) if settings.split_per_seed else data
        outcome = train_cell(cell, float(job["lr"]), seeded, settings, int(seed))
        history = outcome.history
        runs.append({"seed": int(seed), "status": outcome.status, "best_val_acc": float(history.best_val_acc),
                     "epochs_to_best": int(history.best_epoch), "epochs": len(history.val_acc)})  # fmt: skip
    result = {"name": name, "arch": cell.arch, "optimizer": cell.optimizer, "batchnorm": cell.batchnorm,
              "dropout": cell.dropout, "lr": float(job["lr"]), "schedule": settings.schedule, "runs": runs}  # fmt: skip
    atomic_write_json(out_path, result)
    return result


def pilot_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    """The pilot's runs as grid-like rows (the constant-rate CNN stands for the CNN cell)."""
    rows = []
    for result in results:
        if result["arch"] == "cnn" and result["schedule"] != "constant":
            continue
        for run in result["runs"]:
            rows.append({**{k: result[k] for k in ("arch", "optimizer", "batchnorm", "dropout")}, **run})
    return pd.DataFrame(rows)


def planning_sd(frame: pd.DataFrame, specs: list[ClaimSpec], count: bool) -> dict[str, Any]:
    """The pooled sd of the paired differences over the declared contrasts the pilot has cells for
    (accuracy claims measured on validation accuracy, in pp)."""
    variances, used = [], []
    for spec in specs:
        parts = spec.components if spec.kind == "all_of" else (spec,) if spec.kind == "contrast" else ()
        for part in parts:
            if (part.metric in COUNT_METRICS) != count:
                continue
            metric = part.metric if count else "best_val_acc"
            try:
                d, _a, _b = paired_differences(frame, dataclasses.replace(part, metric=metric))
            except KeyError:
                continue
            if len(d) >= 2:
                variances.append(float(np.var(d, ddof=1)))
                used.append(part.id)
    sd = float(np.sqrt(np.mean(variances))) if variances else float("nan")
    return {"sd": sd, "contrasts": sorted(set(used)), "n_contrasts": len(variances)}


def summarise_pilot(paths: Iterable[str | Path], config: dict[str, Any], out_path: str | Path) -> dict[str, Any]:
    """results/pilot/pilot.json: the planning sds and the CNN schedule the pilot supports."""
    results = [read_json(p) for p in paths]
    specs = parse_claims(config["protocol"])
    frame = pilot_frame(results)
    schedules = {r["schedule"]: float(np.mean([run["best_val_acc"] for run in r["runs"]]) * 100)
                 for r in results if r["arch"] == "cnn"}  # fmt: skip
    summary = {
        "seeds": [int(s) for s in config["protocol"]["pilot"]["seeds"]],
        "metric": "validation accuracy (no test image was scored)",
        "accuracy": planning_sd(frame, specs, count=False),
        "epochs": planning_sd(frame, specs, count=True),
        "cnn_val_acc_by_schedule": schedules,
        "cnn_best_schedule": max(schedules, key=schedules.get) if schedules else None,
        "cells": {r["name"]: r["runs"] for r in results},
    }
    atomic_write_json(out_path, summary)
    return summary


def confirmatory_seeds(config: dict[str, Any]) -> set[int]:
    return set(arch_seeds(config, "mlp")) | set(arch_seeds(config, "cnn"))
