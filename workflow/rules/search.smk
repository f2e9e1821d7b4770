rule search_setup:
    input:
        store=rules.mlflow_store.output[0],
    output:
        "results/search/{study}/setup.json",
    log:
        "results/logs/search/{study}/setup.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        search=config["search"],
        cell=lambda wildcards: study_cell(config, wildcards.study).name,
    script:
        "../scripts/search_setup.py"


rule search_worker:
    input:
        setup="results/search/{study}/setup.json",
        data=rules.prepare_dataset.output.data,
        store=rules.mlflow_store.output[0],
    output:
        "results/search/{study}/worker{worker}.json",
    log:
        "results/logs/search/{study}/worker{worker}.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=120,
    params:
        search=config["search"],
        training=config["training"],
        cell=lambda wildcards: study_cell(config, wildcards.study).name,
    script:
        "../scripts/search_worker.py"


rule search_export:
    input:
        setup="results/search/{study}/setup.json",
        workers=expand("results/search/{{study}}/worker{worker}.json", worker=WORKERS),
        store=rules.mlflow_store.output[0],
    output:
        best="results/search/{study}/best.json",
        trials="results/search/{study}/trials.csv",
    log:
        "results/logs/search/{study}/export.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        search=config["search"],
        fallback_lr=lambda wildcards: config["grid"]["fallback_lr"].get(
            study_cell(config, wildcards.study).optimizer
        ),
    script:
        "../scripts/search_export.py"
