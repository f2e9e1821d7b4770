from nnstudy.io import atomic_write_json
from nnstudy.jobs import start_job
from nnstudy.mnist import FILES, prepare_dataset

start_job(snakemake)
files = {key: path for key, path in zip(FILES, snakemake.input, strict=True)}
summary = prepare_dataset(
    files,
    snakemake.output.data,
    train_size=snakemake.params.train_size,
    val_size=snakemake.params.val_size,
    test_size=snakemake.params.test_size,
    seed=snakemake.params.seed,
    n_classes=snakemake.params.n_classes,
    image_shape=snakemake.params.image_shape,
)
atomic_write_json(snakemake.output.summary, summary)
