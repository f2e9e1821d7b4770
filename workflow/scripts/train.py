from nnstudy.grid import run_grid_cell
from nnstudy.jobs import start_job, tracking_context
from nnstudy.training import TrainSettings

start_job(snakemake)
best = snakemake.input.get("best") or None
run_grid_cell(
    cell_name=snakemake.wildcards.cell,
    seeds=snakemake.params.seeds,
    dataset_path=snakemake.input.data,
    best_file=best if isinstance(best, str) or best is None else best[0],
    fallback_lr=snakemake.params.fallback_lr,
    settings=TrainSettings.from_config(snakemake.params.training),
    tracking=tracking_context(snakemake.config, snakemake.input.store),
    result_paths=list(snakemake.output.results),
    model_paths=list(snakemake.output.models),
)
