from nnstudy.jobs import start_job
from nnstudy.pilot import pilot_jobs, run_pilot_job

start_job(snakemake)
name = snakemake.wildcards.pilot
job = pilot_jobs(snakemake.config)[name]
run_pilot_job(name, job, snakemake.params.seeds, snakemake.input.data, snakemake.output[0])
