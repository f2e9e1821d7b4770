rule train:
    input:
        data=rules.prepare_dataset.output.data,
        store=rules.mlflow_store.output[0],
        best=best_lr_file,
    output:
        result="results/grid/{cell}/seed{seed}/result.json",
        model="results/grid/{cell}/seed{seed}/model.npz",
    log:
        "results/logs/grid/{cell}/seed{seed}.log",
    # the CNN's trainings are the longest: started early, they do not end the study alone on one core
    priority: lambda wildcards: 1 if CELLS[wildcards.cell].arch == "cnn" else 0
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=120,
    params:
        training=lambda wildcards: train_options(config, CELLS[wildcards.cell]),
        fallback_lr=lambda wildcards: fallback_lr(config, CELLS[wildcards.cell]),
    script:
        "../scripts/train.py"
