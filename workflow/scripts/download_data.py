from pathlib import Path

from nnstudy.jobs import start_job
from nnstudy.mnist import fetch_mnist, mirror_env, mirror_list

start_job(snakemake)
mirrors = mirror_list(snakemake.params.mirrors, dataset=snakemake.params.dataset)
print(f"mirrors, in order ({mirror_env(snakemake.params.dataset)} first):", *mirrors, sep="\n  ")
fetch_mnist(
    mirrors,
    Path(snakemake.output[0]).parent,
    snakemake.params.timeout,
    snakemake.params.sha256,
    deadline=snakemake.params.deadline,
    min_bytes_per_s=snakemake.params.min_bytes_per_s,
)
