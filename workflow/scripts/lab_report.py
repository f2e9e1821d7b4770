from pathlib import Path

from nnstudy.jobs import param, start_job
from nnstudy.report import write_report

start_job(snakemake)
write_report(
    tables_dir=Path(snakemake.input.tables[0]).parent,
    search_dir=Path("results/search"),
    studies=snakemake.params.studies,
    result_paths=list(snakemake.input.results),
    dataset_json=snakemake.input.dataset,
    config=param(snakemake, "config"),
    template_dir=snakemake.params.template_dir,
    out_dir=Path(snakemake.output.markdown).parent,
    langs=[snakemake.params.lang],
    drawn=list(snakemake.input.figures),
    gradcheck_json=snakemake.input.gradcheck,
    recogniser_json=snakemake.input.recogniser,
    recogniser_figure=snakemake.input.recogniser_figure,
    model_figures_json=snakemake.input.model_figures,
    dataset_path=snakemake.input.dataset_data,
    gui_png=snakemake.input.gui[0] if snakemake.input.gui else None,
)
