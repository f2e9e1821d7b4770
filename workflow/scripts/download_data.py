from pathlib import Path

from nnstudy.jobs import start_job
from nnstudy.mnist import fetch_mnist, mirror_env, mirror_list

start_job(snakemake)
fetching = snakemake.config["data"]  # where and how patiently: not parameters, they change no byte fetched
mirrors = mirror_list(fetching["mirrors"], dataset=snakemake.params.dataset)
print(f"mirrors, in order ({mirror_env(snakemake.params.dataset)} first):", *mirrors, sep="\n  ")
fetch_mnist(
    mirrors,
    Path(snakemake.output[0]).parent,
    fetching["timeout_s"],
    snakemake.params.sha256,
    deadline=fetching["file_deadline_s"],
    min_bytes_per_s=fetching["min_bytes_per_s"],
)
