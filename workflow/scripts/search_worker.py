import json
from pathlib import Path

from nnstudy.config import Cell
from nnstudy.jobs import start_job, tracking_context
from nnstudy.search import run_worker
from nnstudy.training import TrainSettings

start_job(snakemake)
search = snakemake.params.search
cell = Cell.parse(snakemake.params.cell)
run_worker(
    study=snakemake.wildcards.study,
    worker=int(snakemake.wildcards.worker),
    n_trials=search["n_trials"],
    cell=cell,
    lr_range=tuple(search["lr_range"][cell.optimizer]),
    settings=TrainSettings.from_config(snakemake.params.training),
    dataset_path=snakemake.input.data,
    search_config=search,
    setup=json.loads(Path(snakemake.input.setup).read_text()),
    tracking=tracking_context(snakemake.config, snakemake.input.store),
    out_path=snakemake.output[0],
)
