rule tables:
    input:
        grid_results(),
    output:
        runs=report(
            "results/tables/runs.csv", caption="../report/runs.rst", category="Tables"
        ),
        table1_csv=report(
            "results/tables/table1.csv",
            caption="../report/table1.rst",
            category="Tables",
        ),
        table1_md="results/tables/table1.md",
        table2_csv=report(
            "results/tables/table2.csv",
            caption="../report/table2.rst",
            category="Tables",
        ),
        table2_md="results/tables/table2.md",
        table3_csv=report(
            "results/tables/table3.csv",
            caption="../report/table3.rst",
            category="Tables",
        ),
        table3_md="results/tables/table3.md",
        comparisons=report(
            "results/tables/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Tables",
        ),
    log:
        "results/logs/tables.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    script:
        "../scripts/tables.py"


rule figures:
    input:
        results=grid_results(),
        runs=rules.tables.output.runs,
        trials=expand("results/search/{study}/trials.csv", study=STUDIES),
    output:
        curves=report(
            expand(
                "results/figures/curves_{optimizer}.{ext}",
                optimizer=config["grid"]["optimizers"],
                ext=["png", "svg"],
            ),
            caption="../report/curves.rst",
            category="Figures",
        ),
        grid=report(
            expand("results/figures/grid_comparison.{ext}", ext=["png", "svg"]),
            caption="../report/grid.rst",
            category="Figures",
        ),
        cnn=report(
            expand(
                "results/figures/deep_vs_shallow.{ext}",
                ext=["png", "svg"] if config["cnn"]["enabled"] else [],
            ),
            caption="../report/deep_vs_shallow.rst",
            category="Figures",
        ),
        search=report(
            expand(
                "results/figures/{name}.{ext}",
                name=["search_history", "lr_vs_accuracy"] if SEARCH else [],
                ext=["png", "svg"],
            ),
            caption="../report/search.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        studies=STUDIES,
        cnn=config["cnn"]["enabled"],
    script:
        "../scripts/figures.py"


rule register_models:
    input:
        runs=rules.tables.output.runs,
        store=rules.mlflow_store.output[0],
    output:
        "results/mlflow/registered.json",
    log:
        "results/logs/register_models.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    script:
        "../scripts/register_models.py"
