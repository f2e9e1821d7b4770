from nnstudy.gradcheck import check_study_gradients
from nnstudy.jobs import start_job

start_job(snakemake)
check_study_gradients(snakemake.config, snakemake.output[0])
