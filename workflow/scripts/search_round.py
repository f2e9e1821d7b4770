from nnstudy.config import Cell
from nnstudy.io import read_json
from nnstudy.jobs import param, start_job, tracking_context
from nnstudy.search import run_round_part
from nnstudy.training import TrainSettings

start_job(snakemake)
run_round_part(
    study=snakemake.wildcards.study,
    round_=int(snakemake.wildcards.round),
    part=int(snakemake.wildcards.part),
    cell=Cell.parse(snakemake.params.cell),
    settings=TrainSettings.from_config(param(snakemake, "training")),
    dataset_path=snakemake.input.data,
    search_config=param(snakemake, "search"),
    setup=read_json(snakemake.input.setup),
    tracking=tracking_context(snakemake.config, snakemake.input.store),
    out_path=snakemake.output[0],
)
