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
        runs_html=shown("results/tables/runs.html", "runs", "Tables", "Every run"),
        table1_html=shown(
            "results/tables/table1.html", "table1", "Tables", "Table 1: the optimizers"
        ),
        table2_html=shown(
            "results/tables/table2.html", "table2", "Tables", "Table 2: BN and dropout"
        ),
        table3_html=shown(
            "results/tables/table3.html",
            "table3",
            "Tables",
            "Table 3: BP network and CNN",
        ),
        comparisons_html=shown(
            "results/tables/comparisons.html",
            "comparisons",
            "Tables",
            "Paired comparisons",
        ),
        claims_html=shown(
            "results/tables/claims.html", "claims", "Tables", "The declared claims"
        ),
        budget_html=shown(
            "results/tables/budget.html", "budget", "Tables", "Search budget"
        ),
    log:
        "results/logs/tables.log",
    conda:
        "../../environment.yml"
    # the two ends of each exact sign-flip interval are searched side by side (432 s in one process on the
    # default study, which waits on this job alone at its end)
    threads: 2
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
        curves=[
            shown(
                f"results/figures/curves_{optimizer}.png",
                "curves",
                "Figures",
                f"Learning curves, {optimizer_label(optimizer)} (both arms)",
            )
            for optimizer in config["grid"]["optimizers"]
        ],
        grid=shown(
            "results/figures/grid_comparison.png",
            "grid",
            "Figures",
            "BN and dropout, every setting",
        ),
        cnn=(
            [
                shown(
                    "results/figures/deep_vs_shallow.png",
                    "deep_vs_shallow",
                    "Figures",
                    "BP network and CNN",
                )
            ]
            if config["cnn"]["enabled"]
            else []
        ),
        claims=shown(
            "results/figures/claims_forest.png",
            "claims_forest",
            "Figures",
            "The claims: estimates and intervals",
        ),
        search=[
            shown(f"results/figures/{name}.png", "search", "Figures", label)
            for name, label in (
                ("search_history", "Learning-rate searches: history"),
                ("lr_vs_accuracy", "Learning-rate searches: rate and accuracy"),
                ("search_budget", "Learning-rate searches: budget"),
            )
            if SEARCH
        ],
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
        # the forest plot's labels are the declared claims' statements
        protocol=canonical(config["protocol"]),
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
    # what the script reads from the config (the models' names follow the study's)
    params:
        study=config["study_name"],
        log_models=config["mlflow"]["log_models"],
    script:
        "../scripts/register_models.py"
