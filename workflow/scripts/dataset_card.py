import json

from nnstudy.io import atomic_write_json
from nnstudy.jobs import start_job

start_job(snakemake)
atomic_write_json(snakemake.output[0], json.loads(snakemake.params.card))
