"""The study's own gradient check: every kind of network the study trains, narrowed, in float64.

Each distinct network of the grid (architecture, BN, dropout, weight decay, the layer sequence of the
config) is built with at most ``WIDTH`` units or filters per layer (and 20 inputs for an MLP), so that a
centred difference over every parameter takes seconds, and checked on a seeded random batch with
``nnlib.gradcheck.check_network_gradients``.  The result is a file the report quotes; an error above
``THRESHOLD`` stops the workflow, naming the network and the parameter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from nnlib import Network
from nnlib.gradcheck import check_network_gradients

from .config import Cell, grid_cells, train_options
from .io import atomic_write_json
from .training import TrainSettings

WIDTH = 6
THRESHOLD = 1e-6
BATCH = 4


class GradientCheckError(RuntimeError):
    pass


def narrowed_network(config: dict[str, Any], cell: Cell) -> Network:
    """The cell's network (its layer sequence and options) at most ``WIDTH`` wide, in float64."""
    settings = TrainSettings.from_config(train_options(config, cell), dtype="float64")
    settings = dataclasses.replace(
        settings,
        hidden=tuple(min(h, WIDTH) for h in settings.hidden),
        conv=tuple((min(filters, WIDTH // 2), kernel) for filters, kernel in settings.conv),
    )
    spec = settings.spec(cell)
    if cell.arch == "mlp":
        spec = dataclasses.replace(spec, input_dim=20)
    return Network(spec, seed=0)


def check_study_gradients(config: dict[str, Any], out_path: str | Path, seed: int = 0) -> dict[str, Any]:
    """Check one network per distinct kind in the grid, write the errors to ``out_path``, and raise
    ``GradientCheckError`` if any parameter's relative error exceeds ``THRESHOLD``."""
    networks, seen = [], set()
    for cell in grid_cells(config):
        kind = (cell.arch, cell.batchnorm, cell.dropout)
        if kind in seen:
            continue
        seen.add(kind)
        net = narrowed_network(config, cell)
        rng = np.random.default_rng(seed)
        shape = (BATCH, net.spec.input_dim) if cell.arch == "mlp" else (BATCH, *net.spec.input_shape[1:])
        x, y = rng.standard_normal(shape), rng.integers(0, net.spec.classes, BATCH)
        errors = check_network_gradients(net, x, y, seed=seed + 1)
        worst = max(errors, key=errors.get)
        label = cell.variant + (f" (p = {cell.dropout:g})" if cell.dropout else "")
        networks.append({"network": label, "arch": cell.arch,
                         "batchnorm": cell.batchnorm, "dropout": cell.dropout, "n_params": net.n_params,
                         "max_relative_error": errors[worst], "worst_parameter": worst})  # fmt: skip
    summary = {
        "method": "centred differences, h = 1e-6, float64, every parameter",
        "threshold": THRESHOLD,
        "max_relative_error": max(n["max_relative_error"] for n in networks),
        "networks": networks,
    }
    atomic_write_json(out_path, summary)
    failed = [n for n in networks if not n["max_relative_error"] < THRESHOLD]
    if failed:
        names = ", ".join(f"{n['network']} ({n['worst_parameter']}: {n['max_relative_error']:.2e})" for n in failed)
        raise GradientCheckError(f"gradient check failed (relative error >= {THRESHOLD:g}): {names}; see {out_path}")
    return summary
