"""A grid job: one cell's seeds, each trained at the searched (or fallback) learning rate and tracked."""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from .config import Cell
from .io import atomic_write_json, read_json
from .mnist import load_dataset, resplit
from .tracking import RunLogger, kill_stale_runs, log_to_run, standard_tags
from .training import TrainSettings, epoch_logger, run_params, summary_metrics, train_cell, write_result


def learning_rate(cell: Cell, best_file: str | Path | None, fallback: dict[str, float]) -> tuple[float, str]:
    """The cell's learning rate and where it came from (the seed report's in the replication arm, else a
    search's best, or the fallback table)."""
    if cell.arm == "replication":
        if cell.optimizer not in fallback:
            raise ValueError(f"no learning rate for {cell.optimizer}: protocol.replication_lr has no entry")
        return float(fallback[cell.optimizer]), "replication (the seed report's rate)"
    if best_file:
        best = read_json(best_file)
        if best.get("lr") is not None and best.get("source") == "search":
            return float(best["lr"]), f"search:{best['study']}"
        if best.get("lr") is not None:  # the search had no completed trial and handed on the fallback
            return float(best["lr"]), f"fallback ({best['study']}: no completed trial)"
    if cell.optimizer not in fallback:
        raise ValueError(f"no learning rate for {cell.optimizer}: no search result and no grid.fallback_lr entry")
    return float(fallback[cell.optimizer]), "fallback"


def run_grid_cell(
    *,
    cell_name: str,
    seeds: list[int],
    dataset_path: str | Path,
    best_file: str | Path | None,
    fallback_lr: dict[str, float],
    settings: TrainSettings,
    tracking: dict[str, Any],
    result_paths: list[str],
    model_paths: list[str],
) -> list[dict[str, Any]]:
    """Every given seed of a cell, one after the other in this process (the data loaded once): each seed gets
    its own training, MLflow run, checkpoint and result file, exactly as if it ran alone."""
    if not len(seeds) == len(result_paths) == len(model_paths):
        raise ValueError(f"{cell_name}: {len(seeds)} seeds, {len(result_paths)} results, {len(model_paths)} models")
    for seed, *paths in zip(seeds, result_paths, model_paths, strict=True):
        if any(Path(path).parent.name != f"seed{seed}" for path in paths):
            raise ValueError(f"{cell_name}: seed {seed} paired with {paths}")
    data = load_dataset(dataset_path, settings.dtype)
    return [
        run_grid_job(
            cell_name=cell_name,
            seed=int(seed),
            data=resplit(data, int(seed), settings.split_seed) if settings.split_per_seed else data,
            dataset_path=dataset_path,
            best_file=best_file,
            fallback_lr=fallback_lr,
            settings=settings,
            tracking=tracking,
            result_path=result_path,
            model_path=model_path,
        )
        for seed, result_path, model_path in zip(seeds, result_paths, model_paths, strict=True)
    ]


def grid_logger(cell: Cell, seed: int, lr: float, lr_source: str, tracking: dict[str, Any]) -> RunLogger:
    """The MLflow run of one grid training, after ending any run this job left behind in this folder (marked
    superseded)."""
    client = MlflowClient(tracking["uri"])
    experiment = tracking["experiments"]["grid"]
    owner = {"study": tracking["study"], "cell": cell.name, "seed": seed, "workflow_id": tracking["workflow_id"]}
    kill_stale_runs(client, experiment, owner, supersede=True)
    rule = f"workflow/rules/grid.smk:{'train_cnn' if cell.arch == 'cnn' else 'train'}"
    note = (f"{cell.variant} ({cell.name}) with {cell.optimizer} at lr {lr:.4g} ({lr_source}), seed {seed}; "
            "val_acc and test_acc are the early-stopped model's.")  # fmt: skip
    tags = {**owner, "workflow": tracking["workflow"], "arm": cell.arm, "optimizer": cell.optimizer,
            "variant": cell.variant, "status": "running", "superseded": "false",
            **standard_tags(tracking, rule, note)}  # fmt: skip
    # the seed first: MLflow's runs table cuts long names at the end
    return RunLogger(client, experiment, run_name=f"seed {seed} · {cell.name}", tags=tags,
                     flush_seconds=tracking["flush_seconds"])  # fmt: skip


def result_fields(cell: Cell, seed: int, lr: float, lr_source: str, data: dict[str, Any], run_id: str,
                  tracking: dict[str, Any], started_at: str) -> dict[str, Any]:  # fmt: skip
    """What a grid run's result.json says about the run besides its metrics."""
    return {"study": tracking["study"], "cell": cell.name, "seed": seed, "arm": cell.arm, "arch": cell.arch,
            "optimizer": cell.optimizer, "batchnorm": cell.batchnorm, "dropout": cell.dropout,
            "variant": cell.variant, "lr": lr, "lr_source": lr_source, "dataset_digest": data["digest"],
            "mlflow_run_id": run_id, "git_commit": tracking["git"], "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


def run_grid_job(
    *,
    cell_name: str,
    seed: int,
    data: dict[str, Any],
    dataset_path: str | Path,
    best_file: str | Path | None,
    fallback_lr: dict[str, float],
    settings: TrainSettings,
    tracking: dict[str, Any],
    result_path: str | Path,
    model_path: str | Path,
) -> dict[str, Any]:
    """Train one seed on the loaded data set, evaluate it on the test set, save checkpoint and result, and
    record it all in MLflow."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    cell = Cell.parse(cell_name)
    lr, lr_source = learning_rate(cell, best_file, fallback_lr)
    logger = grid_logger(cell, seed, lr, lr_source, tracking)
    logger.log_params({**run_params(cell, lr, settings, seed, data["digest"], tracking["git"]), "lr_source": lr_source})
    try:
        outcome = train_cell(cell, lr, data, settings, seed, callback=epoch_logger(logger, f"{cell.name} seed {seed}"))
    except BaseException:
        logger.finish(RunStatus.to_string(RunStatus.FAILED), tags={"status": "failed"})
        raise
    test_acc = outcome.net.evaluate(data["x_test"], data["y_test"]) if outcome.status == "ok" else None
    fields = result_fields(cell, seed, lr, lr_source, data, logger.run_id, tracking, started_at)
    dataset = {"source": str(dataset_path), "name": f"{tracking.get('dataset', 'mnist')}-split",
               "digest": data["digest"][:16]}  # fmt: skip
    return commit_run(logger, outcome, summary_metrics(outcome, test_acc), fields, dataset, tracking["uri"],
                      Path(result_path), Path(model_path))  # fmt: skip


def commit_run(logger: RunLogger, outcome: Any, metrics: dict[str, Any], fields: dict[str, Any],
               dataset: dict[str, str], uri: str, result_path: Path, model_path: Path) -> dict[str, Any]:  # fmt: skip
    """Stage checkpoint and result together, log them to MLflow in one call, and move them into place after
    the run has ended: the result file, moved last, is the job's mark of completion."""
    with tempfile.TemporaryDirectory(dir=result_path.parent, prefix=".pending-") as pending:
        staged_model, staged_result = Path(pending) / model_path.name, Path(pending) / result_path.name
        outcome.net.save(staged_model, extra={"status": outcome.status, "lr": fields["lr"], "seed": fields["seed"]})
        result = write_result(staged_result, fields, outcome, metrics)
        if outcome.status == "ok":  # the data it learnt from (the best runs become MLflow models at the end)
            start = time.perf_counter()
            log_to_run(uri, logger.run_id, dataset=dataset)
            logger.seconds += time.perf_counter() - start
        logger.finish(
            RunStatus.to_string(RunStatus.FINISHED if outcome.status == "ok" else RunStatus.FAILED),
            metrics=metrics,
            tags={"status": outcome.status},
            artifact_dir=pending,
        )
        result["logging_seconds"] = logger.seconds  # every call to the tracking store, the final ones included
        atomic_write_json(staged_result, result)
        os.replace(staged_model, model_path)
        os.replace(staged_result, result_path)
    return result
