import json
import os

from snakemake.logging import logger
from snakemake.utils import validate

from nnstudy.datasets import dataset_card
from nnstudy.jobs import canonical
from nnstudy.pilot import pilot_jobs

from nnstudy.config import (
    ConfigError,
    cell_seeds,
    check_config,
    coarse_splits,
    fallback_lr,
    folder_problems,
    gradient_check_config,
    grid_cells,
    report_config,
    n_rounds,
    round_parts,
    schema_errors,
    search_settings,
    store_lost_warnings,
    study_cell,
    study_for_cell,
    study_names,
    train_options,
    untestable_claims,
)

problems = schema_errors(
    config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
)
if problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems))
validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except ConfigError as error:
    raise WorkflowError(f"invalid configuration: {error}")
for warning in [*untestable_claims(config), *coarse_splits(config)]:
    logger.warning(warning)

# Each study keeps its results/, report/ and Snakemake state (.snakemake: lock, metadata) in its own folder
# (config output_dir), entered before any path is planned: two studies in one folder never mix or rerun each
# other. Jobs spawned on a cluster parse this file again from the same starting folder and land here too.
if config["output_dir"] not in (".", "./"):
    os.makedirs(config["output_dir"], exist_ok=True)
    os.chdir(config["output_dir"])

problems = folder_problems(".", config["mlflow"]["tracking_uri"])
if problems:
    raise WorkflowError("unusable study folder:\n  " + "\n  ".join(problems))
for warning in store_lost_warnings(".", config["mlflow"]["tracking_uri"]):
    logger.warning(warning)

CELLS = {cell.name: cell for cell in grid_cells(config)}
STUDIES = study_names(config)
STUDY_CELLS = {study: study_cell(config, study) for study in STUDIES}
SEARCH = bool(STUDIES)  # searches are on and the tuned arm runs


wildcard_constraints:
    cell="(rep-)?(cnn-)?[a-z]+-bn[01]-dp[0-9.]+",
    seed=r"\d+",
    study="lr-[a-z0-9.-]+",
    round=r"\d+",
    part=r"\d+",


def grid_runs(name):
    """One file of every training: each cell with each of its seeds."""
    return [
        f"results/grid/{cell}/seed{seed}/{name}"
        for cell in CELLS
        for seed in cell_seeds(config, CELLS[cell])
    ]


def grid_results():
    return grid_runs("result.json")


def portable_path(path):
    """Relative to the working directory when inside it, so that moving or copying the project folder
    (code and results together) does not change a job's input paths and rerun it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def grid_models():
    return grid_runs("model.npz")


def best_lr_file(wildcards):
    """The search result a grid cell takes its learning rate from (none when searches are off, and none in
    the replication arm)."""
    study = study_for_cell(config, CELLS[wildcards.cell])
    return f"results/search/{study}/best.json" if SEARCH and study else []


def round_outputs(study, round_):
    """The part outputs of one round of a study."""
    settings = search_settings(config, STUDY_CELLS[study])
    return expand(
        f"results/search/{study}/round{round_}/part{{part}}.json",
        part=range(round_parts(settings, round_)),
    )


def previous_round(wildcards):
    """A round starts when the round before it has finished (none for round 0)."""
    round_ = int(wildcards.round)
    return round_outputs(wildcards.study, round_ - 1) if round_ > 0 else []


def all_rounds(wildcards):
    """Every part of every round of a study."""
    settings = search_settings(config, STUDY_CELLS[wildcards.study])
    return [
        path
        for round_ in range(n_rounds(settings))
        for path in round_outputs(wildcards.study, round_)
    ]


def drawn_figures(wildcards):
    """The English report takes the figures job's PNGs; another language draws its own, beside that job."""
    if wildcards.lang != "en":
        return []
    return [path for path in rules.figures.output if path.endswith(".png")]


def shown(path, caption, category, name):
    """An output that `snakemake --report` shows, listed under ``name`` rather than its file name, with the
    caption ``workflow/report/<caption>.rst``."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category=category,
        labels={"result": name},
    )


def optimizer_label(optimizer):
    return {"sgd": "SGD", "adam": "Adam"}.get(optimizer, optimizer)
