from pathlib import Path

from nnstudy.io import atomic_write_json
from nnstudy.jobs import start_job
from nnstudy.tracking import resolve_uri, setup_store, tracking_uri

start_job(snakemake)
results = Path(snakemake.output[0]).parents[1]
uri = tracking_uri(snakemake.params.tracking_uri, results)  # the default store is named relative to the folder
experiments = setup_store(
    resolve_uri(uri, Path.cwd()),
    snakemake.params.prefix,
    results / "mlflow" / "artifacts",
    check_timeout=snakemake.config["mlflow"]["server_check_timeout_s"],  # changes nothing stored
)
atomic_write_json(snakemake.output[0], {"uri": uri, "experiments": experiments})
