from nnstudy.grid import run_grid_cell
from nnstudy.jobs import param, start_job, tracking_context
from nnstudy.training import TrainSettings

start_job(snakemake)
best = snakemake.input.get("best") or None
run_grid_cell(
    cell_name=snakemake.wildcards.cell,
    seeds=param(snakemake, "seeds"),
    dataset_path=snakemake.input.data,
    best_file=best if isinstance(best, str) or best is None else best[0],
    fallback_lr=param(snakemake, "fallback_lr"),
    settings=TrainSettings.from_config(param(snakemake, "training")),
    tracking=tracking_context(snakemake.config, snakemake.input.store),
    result_paths=list(snakemake.output.results),
    model_paths=list(snakemake.output.models),
)
