rule tables:
    input:
        results=grid_results(),
        trials=expand("results/search/{study}/trials.csv", study=STUDIES),
    output:
        runs="results/tables/runs.csv",
        claims="results/tables/claims.csv",
        budget="results/tables/budget.csv",
        table1_csv="results/tables/table1.csv",
        table1_md="results/tables/table1.md",
        table2_csv="results/tables/table2.csv",
        table2_md="results/tables/table2.md",
        table3_csv="results/tables/table3.csv",
        table3_md="results/tables/table3.md",
        comparisons="results/tables/comparisons.csv",
        # the same tables as HTML, which `snakemake --report` shows in place (it offers CSV only as a download)
        runs_html=report(
            "results/tables/runs.html", caption="../report/runs.rst", category="Tables"
        ),
        table1_html=report(
            "results/tables/table1.html",
            caption="../report/table1.rst",
            category="Tables",
        ),
        table2_html=report(
            "results/tables/table2.html",
            caption="../report/table2.rst",
            category="Tables",
        ),
        table3_html=report(
            "results/tables/table3.html",
            caption="../report/table3.rst",
            category="Tables",
        ),
        comparisons_html=report(
            "results/tables/comparisons.html",
            caption="../report/comparisons.rst",
            category="Tables",
        ),
        claims_html=report(
            "results/tables/claims.html",
            caption="../report/claims.rst",
            category="Tables",
        ),
        budget_html=report(
            "results/tables/budget.html",
            caption="../report/budget.rst",
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
    params:
        # as canonical JSON: an edit of any protocol key reruns the tables, a reordering of keys does not
        protocol=json.dumps(config["protocol"], sort_keys=True, ensure_ascii=False),
    script:
        "../scripts/tables.py"


rule figures:
    input:
        results=grid_results(),
        runs=rules.tables.output.runs,
        claims=rules.tables.output.claims,
        trials=expand("results/search/{study}/trials.csv", study=STUDIES),
        best=expand("results/search/{study}/best.json", study=STUDIES),
    output:
        # `snakemake --report` shows each figure once, as PNG; the SVGs (for print) stay in results/figures
        curves=report(
            expand(
                "results/figures/curves_{optimizer}.png",
                optimizer=config["grid"]["optimizers"],
            ),
            caption="../report/curves.rst",
            category="Figures",
        ),
        grid=report(
            "results/figures/grid_comparison.png",
            caption="../report/grid.rst",
            category="Figures",
        ),
        cnn=report(
            (
                ["results/figures/deep_vs_shallow.png"]
                if config["cnn"]["enabled"]
                else []
            ),
            caption="../report/deep_vs_shallow.rst",
            category="Figures",
        ),
        claims=report(
            "results/figures/claims_forest.png",
            caption="../report/claims_forest.rst",
            category="Figures",
        ),
        search=report(
            expand(
                "results/figures/{name}.png",
                name=(
                    ["search_history", "lr_vs_accuracy", "search_budget"]
                    if SEARCH
                    else []
                ),
            ),
            caption="../report/search.rst",
            category="Figures",
        ),
        svg=expand(
            "results/figures/{name}.svg",
            name=[f"curves_{o}" for o in config["grid"]["optimizers"]]
            + ["grid_comparison", "claims_forest"]
            + (["deep_vs_shallow"] if config["cnn"]["enabled"] else [])
            + (
                ["search_history", "lr_vs_accuracy", "search_budget"] if SEARCH else []
            ),
        ),
    log:
        "results/logs/figures.log",
    priority: 1  # before register_models: the English report waits for these figures
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        studies=STUDIES,
        cnn=config["cnn"]["enabled"],
        # the seed report's rates, marked in the BP network's learning-rate searches
        seed_lrs=dict(sorted(config["protocol"]["replication_lr"].items())),
    script:
        "../scripts/figures.py"


rule register_models:
    input:
        runs=rules.tables.output.runs,
        data=rules.prepare_dataset.output.data,
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
