import json
from pathlib import Path

from nnstudy.jobs import start_job
from nnstudy.tables import write_tables

start_job(snakemake)
write_tables(
    snakemake.input.results,
    Path(snakemake.output.runs).parent,
    protocol=json.loads(snakemake.params.protocol),
    trial_paths=snakemake.input.trials,
    workers=snakemake.threads,
)
