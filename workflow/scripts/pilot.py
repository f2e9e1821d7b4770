from nnstudy.jobs import start_job
from nnstudy.pilot import summarise_pilot

start_job(snakemake)
summarise_pilot(snakemake.input, snakemake.config, snakemake.output[0])
