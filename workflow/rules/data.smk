rule download_data:
    output:
        expand(
            "results/data/raw/{name}",
            name=[
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
            ],
        ),
    log:
        "results/logs/download_data.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=512,
        runtime=30,
    # what the files are; where and how patiently to fetch them (data.mirrors, timeout_s, file_deadline_s,
    # min_bytes_per_s) changes no byte of them, so the script reads those from the config: editing them
    # reruns nothing (as a parameter, a new timeout would rewrite the data and rerun the whole study)
    params:
        dataset=config["data"]["name"],
        sha256=dict(sorted(config["data"]["sha256"].items())),  # in a canonical order
    script:
        "../scripts/download_data.py"


rule prepare_dataset:
    input:
        rules.download_data.output,
    output:
        data="results/data/mnist_split.npz",
        summary="results/data/dataset.json",
    log:
        "results/logs/prepare_dataset.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        train_size=config["data"]["train_size"],
        val_size=config["data"]["val_size"],
        test_size=config["data"]["test_size"],
        seed=config["data"]["split_seed"],
        n_classes=len(config["data"]["classes"]["en"]),
        image_shape=config["data"]["image_shape"],
    script:
        "../scripts/prepare_dataset.py"


rule mlflow_store:
    output:
        "results/mlflow/store.json",
    log:
        "results/logs/mlflow_store.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    # the store and its experiments' names; how long to wait for a server (server_check_timeout_s) is read
    # from the config: it changes nothing the store holds, so editing it reruns nothing
    params:
        tracking_uri=config["mlflow"]["tracking_uri"],
        prefix=config["mlflow"]["experiment_prefix"],
    script:
        "../scripts/mlflow_store.py"


# what the report, the figures and the recogniser say about the data: its name, what one image shows, its
# class names per language and the recogniser's preprocessing (config data); nothing trains on it
rule dataset_card:
    output:
        "results/data/card.json",
    log:
        "results/logs/dataset_card.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=256,
        runtime=5,
    params:
        card=json.dumps(
            dataset_card(config["data"]), sort_keys=True, ensure_ascii=False
        ),
    script:
        "../scripts/dataset_card.py"
