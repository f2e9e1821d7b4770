import json
from pathlib import Path

from nnstudy.jobs import start_job, tracking_context
from nnstudy.search import export_search

start_job(snakemake)
export_search(
    setup=json.loads(Path(snakemake.input.setup).read_text()),
    search_config=snakemake.params.search,
    fallback_lr=snakemake.params.fallback_lr,
    tracking=tracking_context(snakemake.config, snakemake.input.store),
    best_path=snakemake.output.best,
    trials_path=snakemake.output.trials,
)
