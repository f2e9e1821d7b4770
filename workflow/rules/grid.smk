# A BP-network cell trains all its seeds in one job (one process start, one data load, one MLflow import for
# ten trainings); a CNN cell trains a seed per job, each about a minute long, so that they spread over the cores.


rule train:
    input:
        data=rules.prepare_dataset.output.data,
        store=rules.mlflow_store.output[0],
        best=best_lr_file,
    output:
        results=expand("results/grid/{{cell}}/seed{seed}/result.json", seed=MLP_SEEDS),
        models=expand("results/grid/{{cell}}/seed{seed}/model.npz", seed=MLP_SEEDS),
    log:
        "results/logs/grid/{cell}.log",
    wildcard_constraints:
        cell="(rep-)?[a-z]+-bn[01]-dp[0-9.]+",
    # longest first, so that the study does not end on one busy core: the replication arm's SGD cells (lr
    # 0.02, about 55 epochs to the best; 2-3 min a cell) before the other cells (1-1.5 min), and those before
    # the CNN's seed jobs (0.5-1.3 min), which fill the end
    priority:
        lambda wildcards: 1
        + int(
            CELLS[wildcards.cell].arm == "replication"
            and CELLS[wildcards.cell].optimizer == "sgd"
        )
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=240,
    # canonical JSON (sorted keys, sorted seeds): the same values in another order rerun nothing
    params:
        seeds=canonical(sorted(MLP_SEEDS)),
        training=lambda wildcards: canonical(
            train_options(config, CELLS[wildcards.cell])
        ),
        fallback_lr=lambda wildcards: canonical(
            fallback_lr(config, CELLS[wildcards.cell])
        ),
    script:
        "../scripts/train.py"


rule train_cnn:
    input:
        data=rules.prepare_dataset.output.data,
        store=rules.mlflow_store.output[0],
        best=best_lr_file,
    output:
        results=["results/grid/{cell}/seed{seed}/result.json"],
        models=["results/grid/{cell}/seed{seed}/model.npz"],
    log:
        "results/logs/grid/{cell}/seed{seed}.log",
    wildcard_constraints:
        cell="(rep-)?cnn-[a-z]+-bn[01]-dp[0-9.]+",
    # the shortest training jobs: last (see rule train)
    priority: 0
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=120,
    params:
        seeds=lambda wildcards: canonical([int(wildcards.seed)]),
        training=lambda wildcards: canonical(
            train_options(config, CELLS[wildcards.cell])
        ),
        fallback_lr=lambda wildcards: canonical(
            fallback_lr(config, CELLS[wildcards.cell])
        ),
    script:
        "../scripts/train.py"
