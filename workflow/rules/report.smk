LANGS = config["report"]["languages"]
REPORT_TEMPLATES = [
    portable_path(os.path.join(workflow.basedir, "report", "templates", name))
    for name in [
        "lab_report.md.j2",
        "macros.j2",
        "style.css",
        "locale/zh/LC_MESSAGES/report.po",
    ]
]


# one job per language, so that the languages run side by side
rule lab_report:
    input:
        results=grid_results(),
        tables=rules.tables.output,
        best=expand("results/search/{study}/best.json", study=STUDIES),
        trials=expand("results/search/{study}/trials.csv", study=STUDIES),
        dataset=rules.prepare_dataset.output.summary,
        dataset_data=rules.prepare_dataset.output.data,
        card=rules.dataset_card.output[0],
        templates=REPORT_TEMPLATES,
        figures=drawn_figures,
        gradcheck="results/gradcheck.json",
        recogniser="results/recogniser.json",
        recogniser_figure="results/figures/recogniser.png",
        model_figures="results/model_figures.json",
        gui=["results/figures/gui.png"] if config["report"]["gui_screenshot"] else [],
    output:
        markdown="report/lab_report.{lang}.md",
        html=shown(
            "report/lab_report.{lang}.html",
            "lab_report",
            "Lab report",
            "The lab report ({lang})",
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
        # the report reads the whole config (its digest, deviations, names, settings): any edit re-renders it
        config=canonical(report_config(config)),
    script:
        "../scripts/lab_report.py"


# the engine's gradients against centred differences, for every kind of network the grid trains (narrowed,
# float64); the report quotes the largest relative error, and an error above 1e-6 stops the workflow
rule gradient_check:
    output:
        "results/gradcheck.json",
    log:
        "results/logs/gradient_check.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    params:
        # every key the check reads: the kinds of network trained (not their seeds: reordering or adding a
        # seed checks nothing new), the arms and the split options
        networks=canonical(gradient_check_config(config)),
    script:
        "../scripts/gradient_check.py"


# task 4 measured: the GUI's own path (the pad's PNG, read as an upload is) on real test digits, with the
# checkpoints the GUI offers (the best BP network and CNN by validation accuracy)
rule recogniser:
    input:
        results=grid_results(),
        models=grid_models(),
        data=rules.prepare_dataset.output.data,
        card=rules.dataset_card.output[0],
    output:
        summary="results/recogniser.json",
        figure=shown(
            "results/figures/recogniser.png",
            "recogniser",
            "Figures",
            "The recogniser on test images",
        ),
    log:
        "results/logs/recogniser.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        n_digits=config["report"]["recogniser_digits"],
    script:
        "../scripts/recogniser.py"


# the checkpoints the GUI offers (the best BP network and CNN by validation accuracy) on the whole test split:
# confusion matrices, misclassified digits and the BP network's first-layer weights
rule model_figures:
    input:
        results=grid_results(),
        models=grid_models(),
        data=rules.prepare_dataset.output.data,
        card=rules.dataset_card.output[0],
    output:
        summary="results/model_figures.json",
        confusion=shown(
            "results/figures/confusion.png",
            "confusion",
            "Figures",
            "Confusion matrices",
        ),
        misclassified=shown(
            "results/figures/misclassified.png",
            "misclassified",
            "Figures",
            "Misread test images",
        ),
        weights=shown(
            "results/figures/first_layer_weights.png",
            "first_layer_weights",
            "Figures",
            "First-layer weights",
        ),
        svg=expand(
            "results/figures/{name}.svg",
            name=["confusion", "misclassified", "first_layer_weights"],
        ),
    log:
        "results/logs/model_figures.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    script:
        "../scripts/model_figures.py"


# task 4 as a reader sees it: the recogniser's page, served with the study's checkpoints on 127.0.0.1 and
# driven by headless Chromium, answering the first test digit drawn on its pad
rule gui_screenshot:
    input:
        results=grid_results(),
        models=grid_models(),
        data=rules.prepare_dataset.output.data,
        card=rules.dataset_card.output[0],
    output:
        screenshot=shown(
            "results/figures/gui.png", "gui", "Figures", "The recogniser's page"
        ),
        answer="results/gui_screenshot.json",
    log:
        "results/logs/gui_screenshot.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    script:
        "../scripts/gui_screenshot.py"
