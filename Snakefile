# nnstudy: the seed lab report's study as a Snakemake workflow (MNIST by default; any IDX dataset).
#   snakemake --cores N          run everything (see README.md)
import os

from snakemake.utils import min_version

from nnstudy.console import end_rate_limiter_timers
from nnstudy.jobs import study_done_message
from nnstudy.slurm import explain as explain_slurm_limits

min_version("9.0")


# the default study, found beside this Snakefile whatever the working directory (--directory, -s from
# elsewhere); a --configfile given on the command line overrides its keys
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# the home page of `snakemake --report`
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/grid.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/pilot.smk"


rule all:
    default_target: True
    input:
        rules.tables.output,
        rules.figures.output,
        # the best checkpoints on the test set (the lab report's job needs them too, in its own language)
        rules.model_figures.output,
        expand("report/lab_report.{lang}.{ext}", lang=LANGS, ext=["md", "html", "pdf"]),
        rules.register_models.output,
        # every result and checkpoint the study promises, so that a deleted one is rebuilt by a plain rerun
        grid_results(),
        grid_models(),
        expand(
            "results/search/{study}/{name}",
            study=STUDIES,
            name=["best.json", "trials.csv"],
        ),


onerror:
    # on SLURM: name each job stopped for exceeding its mem_mb or runtime, and where to raise it
    explain_slurm_limits(log)
    end_rate_limiter_timers()


onsuccess:
    # where to look next, as the last lines of the console (docs/outputs.md has the rest); through
    # Snakemake's logger, so that it follows the last job's line
    logger.info(
        study_done_message(
            LANGS, config["mlflow"]["tracking_uri"], config["output_dir"]
        )
    )
    end_rate_limiter_timers()  # the process exits now, not when the last pending timer fires
