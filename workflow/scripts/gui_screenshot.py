from nnstudy.gui.screenshot import screenshot_recogniser
from nnstudy.io import atomic_write_json, read_json
from nnstudy.jobs import start_job

start_job(snakemake)
answer = screenshot_recogniser(
    "results", snakemake.input.data, snakemake.output.screenshot, card=read_json(snakemake.input.card)
)
atomic_write_json(snakemake.output.answer, answer)
