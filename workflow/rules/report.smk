LANGS = config["report"]["languages"]
REPORT_TEMPLATES = [
    portable_path(os.path.join(workflow.basedir, "report", "templates", name))
    for name in ["lab_report.en.md.j2", "lab_report.zh.md.j2", "macros.j2", "style.css"]
]


# one job per language, so that the languages run side by side
rule lab_report:
    input:
        results=grid_results(),
        tables=rules.tables.output,
        best=expand("results/search/{study}/best.json", study=STUDIES),
        trials=expand("results/search/{study}/trials.csv", study=STUDIES),
        dataset=rules.prepare_dataset.output.summary,
        templates=REPORT_TEMPLATES,
        figures=drawn_figures,
    output:
        markdown="report/lab_report.{lang}.md",
        html=report(
            "report/lab_report.{lang}.html",
            caption="../report/lab_report.rst",
            category="Lab report",
        ),
        pdf="report/lab_report.{lang}.pdf",
    log:
        "results/logs/lab_report.{lang}.log",
    wildcard_constraints:
        lang="en|zh",
    priority: 1
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=15,
    params:
        studies=STUDIES,
        template_dir=lambda wildcards, input: os.path.dirname(input.templates[0]),
        lang=lambda wildcards: wildcards.lang,
    script:
        "../scripts/lab_report.py"
