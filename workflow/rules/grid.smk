# A job per seed and cell: adding a seed trains only that seed, and every earlier seed's result, checkpoint and
# MLflow run stay as they were. Each job pays its start-up (Python, NumPy, MLflow: about 3 s; measured in
# docs/performance.md); on SLURM the profile packs many of them into one allocation (groups).


rule train:
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
        cell="(rep-)?[a-z]+-bn[01]-dp[0-9.]+",
    # longest first, so that the study does not end on one busy core: the replication arm's SGD seeds (lr
    # 0.02, about 55 epochs to the best) before the other BP-network seeds, and those before the CNN's seed
    # jobs (0.5-1.3 min), which fill the end
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
        runtime=30,
    # canonical JSON (sorted keys): the same values in another order rerun nothing
    params:
        study=config["study_name"],  # written into each result and tag
        seeds=lambda wildcards: canonical([int(wildcards.seed)]),
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
    # last (see rule train)
    priority: 0
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=120,
    params:
        study=config["study_name"],  # written into each result and tag
        seeds=lambda wildcards: canonical([int(wildcards.seed)]),
        training=lambda wildcards: canonical(
            train_options(config, CELLS[wildcards.cell])
        ),
        fallback_lr=lambda wildcards: canonical(
            fallback_lr(config, CELLS[wildcards.cell])
        ),
    script:
        "../scripts/train.py"
