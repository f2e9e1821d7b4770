from pathlib import Path

from nnstudy.datasets import class_names
from nnstudy.io import read_json
from nnstudy.jobs import start_job
from nnstudy.model_figures import draw_model_figures, summarise_models

start_job(snakemake)
summarise_models("results", snakemake.input.data, snakemake.output.summary)
draw_model_figures(
    snakemake.output.summary,
    snakemake.input.data,
    Path(snakemake.output.confusion).parent,
    names=class_names(read_json(snakemake.input.card), "en"),
)
