from pathlib import Path

from nnstudy.claims_text import statements
from nnstudy.figures import claims_forest, deep_vs_shallow, grid_comparison, optimizer_curves, search_figures
from nnstudy.jobs import param, start_job

start_job(snakemake)
out = Path(snakemake.output.grid).parent
optimizer_curves(snakemake.input.results, out)
grid_comparison(snakemake.input.runs, out)
claims_forest(snakemake.input.claims, out, labels=statements(param(snakemake, "protocol"), "en"))
if snakemake.params.cnn:
    deep_vs_shallow(snakemake.input.runs, out)
if snakemake.params.studies:
    search_figures(
        dict(zip(snakemake.params.studies, snakemake.input.trials, strict=True)),
        out,
        seed_lrs=dict(snakemake.params.seed_lrs),
        best_jsons=dict(zip(snakemake.params.studies, snakemake.input.best, strict=True)),
    )
