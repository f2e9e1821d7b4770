from nnstudy.jobs import param, start_job, tracking_context
from nnstudy.tracking import register_best_models

start_job(snakemake)
tracking = tracking_context(snakemake.config, snakemake.input.store)
register_best_models(
    snakemake.input.runs,
    snakemake.input.data,
    tracking["uri"],
    param(snakemake, "study"),
    snakemake.output[0],
    enabled=param(snakemake, "log_models"),
)
