from nnstudy.config import Cell
from nnstudy.io import read_json
from nnstudy.jobs import param, start_job, tracking_context
from nnstudy.search import export_search

start_job(snakemake)
export_search(
    setup=read_json(snakemake.input.setup),
    search_config=param(snakemake, "search"),
    fallback_lr=param(snakemake, "fallback_lr"),
    cell=Cell.parse(snakemake.params.cell),
    tracking=tracking_context(snakemake.config, snakemake.input.store),
    best_path=snakemake.output.best,
    trials_path=snakemake.output.trials,
)
