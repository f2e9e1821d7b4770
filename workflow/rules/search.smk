rule search_setup:
    input:
        store=rules.mlflow_store.output[0],
    output:
        "results/search/{study}/setup.json",
    log:
        "results/logs/search/{study}/setup.log",
    # a search's jobs hold back the tuned arm's trainings: all of them run before any training (Snakemake
    # does not pass a job's priority on to the jobs it waits for, so setup and export carry it too)
    priority: 3
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        study=config["study_name"],  # names the Optuna study and tags each run
        search=lambda wildcards: canonical(
            search_settings(config, STUDY_CELLS[wildcards.study])
        ),
        cell=lambda wildcards: STUDY_CELLS[wildcards.study].name,
    script:
        "../scripts/search_setup.py"


rule search_round:
    input:
        setup="results/search/{study}/setup.json",
        data=rules.prepare_dataset.output.data,
        store=rules.mlflow_store.output[0],
        previous=previous_round,
    output:
        "results/search/{study}/round{round}/part{part}.json",
    log:
        "results/logs/search/{study}/round{round}/part{part}.log",
    priority: 3
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=120,
    params:
        study=config["study_name"],  # names the Optuna study and tags each run
        search=lambda wildcards: canonical(
            search_settings(config, STUDY_CELLS[wildcards.study])
        ),
        training=lambda wildcards: canonical(
            train_options(config, STUDY_CELLS[wildcards.study], for_search=True)
        ),
        cell=lambda wildcards: STUDY_CELLS[wildcards.study].name,
    script:
        "../scripts/search_round.py"


rule search_export:
    input:
        setup="results/search/{study}/setup.json",
        rounds=all_rounds,
        store=rules.mlflow_store.output[0],
    output:
        best="results/search/{study}/best.json",
        trials="results/search/{study}/trials.csv",
    log:
        "results/logs/search/{study}/export.log",
    priority: 3
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        study=config["study_name"],  # names the Optuna study and tags each run
        search=lambda wildcards: canonical(
            search_settings(config, STUDY_CELLS[wildcards.study])
        ),
        fallback_lr=lambda wildcards: fallback_lr(
            config, STUDY_CELLS[wildcards.study]
        ).get(STUDY_CELLS[wildcards.study].optimizer),
        cell=lambda wildcards: STUDY_CELLS[wildcards.study].name,
    script:
        "../scripts/search_export.py"
