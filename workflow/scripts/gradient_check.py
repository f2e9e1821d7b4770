from nnstudy.gradcheck import check_study_gradients
from nnstudy.jobs import param, start_job

start_job(snakemake)
check_study_gradients(param(snakemake, "networks"), snakemake.output[0])
