from nnstudy.io import read_json
from nnstudy.jobs import start_job
from nnstudy.recogniser import evaluate_recogniser

start_job(snakemake)
evaluate_recogniser(
    "results",
    snakemake.input.data,
    snakemake.output.summary,
    snakemake.output.figure,
    n=snakemake.params.n_digits,
    card=read_json(snakemake.input.card),
)
