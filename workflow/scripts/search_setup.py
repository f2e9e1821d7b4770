from pathlib import Path

from nnstudy.config import Cell
from nnstudy.jobs import param, start_job, tracking_context
from nnstudy.search import setup_search

start_job(snakemake)
setup_search(
    study=snakemake.wildcards.study,
    cell=Cell.parse(snakemake.params.cell),
    search_config=param(snakemake, "search"),
    tracking=tracking_context(snakemake.config, snakemake.input.store),
    study_dir=Path(snakemake.output[0]).parent,
    out_path=snakemake.output[0],
)
