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
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=120,
    params:
        training=config["training"],
        fallback_lr=config["grid"]["fallback_lr"],
    script:
        "../scripts/train.py"
