import os

from snakemake.utils import validate

from nnstudy.config import (
    ConfigError,
    check_config,
    fallback_lr,
    grid_cells,
    schema_errors,
    search_settings,
    study_cell,
    study_for_cell,
    study_names,
    train_options,
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

CELLS = {cell.name: cell for cell in grid_cells(config)}
SEEDS = [int(seed) for seed in config["grid"]["seeds"]]
STUDIES = study_names(config)
STUDY_CELLS = {study: study_cell(config, study) for study in STUDIES}
SEARCH = config["search"]["enabled"]


wildcard_constraints:
    cell="(cnn-)?[a-z]+-bn[01]-dp[0-9.]+",
    seed=r"\d+",
    study="lr-[a-z0-9.-]+",
    worker=r"\d+",


def grid_results():
    return expand("results/grid/{cell}/seed{seed}/result.json", cell=CELLS, seed=SEEDS)


def best_lr_file(wildcards):
    """The search result a grid cell takes its learning rate from (none when searches are off)."""
    if not SEARCH:
        return []
    return f"results/search/{study_for_cell(config, CELLS[wildcards.cell])}/best.json"


def study_workers(wildcards):
    """The worker outputs of one study (the CNN's smaller budget may use fewer workers)."""
    cell = STUDY_CELLS[wildcards.study]
    n = search_settings(config, cell)["workers"]
    return expand(
        f"results/search/{wildcards.study}/worker{{worker}}.json", worker=range(n)
    )
