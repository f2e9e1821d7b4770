"""Any dataset in MNIST's format: a generated dataset with non-digit class names runs through the whole
workflow in its own folder, and its report, figures and recogniser page speak of its classes, never of
digits; the Fashion-MNIST config plans a study of its own beside a finished MNIST study."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest
import yaml
from conftest import REPO, clean_env, copy_workflow, launch_chromium, snakemake, write_small_study

CLASSES_EN = ["Circle", "Square", "Triangle", "Star", "Cross", "Ring", "Arrow", "Heart", "Moon", "Ankle boot"]
CLASSES_ZH = ["圆", "方块", "三角", "星", "叉", "环", "箭头", "心", "月", "踝靴"]
STUDY = "studies/shapes"


@pytest.fixture(scope="module")
def shapes_study(tmp_path_factory):
    """A small study of 'shapes' (synthetic images, ten named classes, photo preprocessing) in its own folder."""
    workdir = tmp_path_factory.mktemp("shapes")
    copy_workflow(workdir)
    config = write_small_study(workdir)
    config["study_name"] = "shapes-bp"
    config["output_dir"] = STUDY
    config["data"].update(
        name="shapes",
        display_name={"en": "Shapes", "zh": "形状集"},
        item={"en": "shape", "zh": "形状"},
        classes={"en": CLASSES_EN, "zh": CLASSES_ZH},
        preprocess="photo",
        references=[{"model": {"en": "A published MLP"}, "arch": "mlp", "accuracy": 42.5, "source": "a test"}],
    )
    config["grid"].update(optimizers=["adam"], seeds=[1, 2])
    config["search"]["enabled"] = False
    config["protocol"].update(arms=["tuned"], deviations=[])  # the default's deviations are MNIST's history
    config["mlflow"]["experiment_prefix"] = "shapes"
    config["report"].update(languages=["en", "zh"], gui_screenshot=True, recogniser_digits=50)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    proc = snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    (workdir / "console.txt").write_text(proc.stdout + proc.stderr)
    return workdir, config


def test_the_study_lives_in_its_own_folder(shapes_study):
    workdir, _ = shapes_study
    study = workdir / STUDY
    assert (study / "results" / "tables" / "claims.csv").exists()
    assert (study / ".snakemake").is_dir()  # its own lock and job metadata
    assert not (workdir / "results").exists() and not (workdir / "report" / "lab_report.en.md").exists()
    card = yaml.safe_load((study / "results" / "data" / "card.json").read_text())
    assert card["classes"]["en"] == CLASSES_EN and card["preprocess"] == "photo"
    # the closing lines name its store and report under its folder, and link MLflow's runs view of its grid
    console = (workdir / "console.txt").read_text()
    grid = json.loads((study / "results" / "mlflow" / "store.json").read_text())["experiments"]["grid"]
    link = f"then http://127.0.0.1:5000/#/experiments/{grid}/runs?workflowType=machine_learning"
    assert link in console, console[-1500:]
    assert f"--backend-store-uri sqlite:///{STUDY}/results/mlflow/mlflow.db" in console


def test_the_report_follows_the_dataset(shapes_study):
    workdir, _ = shapes_study
    en = (workdir / STUDY / "report" / "lab_report.en.md").read_text()
    zh = (workdir / STUDY / "report" / "lab_report.zh.md").read_text()
    assert en.startswith("# Lab report: a three-layer BP network on Shapes")
    assert "the 10 classes of Shapes (Circle, Square" in en and "Ankle boot" in en
    assert "形状集" in zh and "踝靴" in zh
    assert not re.search(r"\bdigits?\b", en, re.IGNORECASE), re.findall(r".{60}\bdigits?\b.{20}", en, re.I)[:3]
    assert "数字" not in zh and "手写" not in zh
    # MNIST is named only where the report says the seed measured it, never as this study's data
    for line in (line for line in en.splitlines() if "MNIST" in line):
        assert "seed report" in line or "without MNIST's centre-of-mass" in line, line
    assert "seed's Table 1" not in en and "3.6 Published results beside ours" in en
    assert re.search(
        r"\| A published MLP +\| +42\.50 \| a test +\| the BP network \(plain, Adam\) +\| +\d+\.\d\d ± ", en
    )


def test_the_figures_are_labelled_with_the_class_names(shapes_study):
    workdir, _ = shapes_study
    svg = (workdir / STUDY / "results" / "figures" / "confusion.svg").read_text()
    for name in CLASSES_EN:
        assert f"<!-- {name} -->" in svg, name  # matplotlib writes each text as a comment beside its paths
    gallery = (workdir / STUDY / "results" / "figures" / "misclassified.svg").read_text()
    assert re.search(r"<!-- (Circle|Square|Triangle|Star|Cross|Ring|Arrow|Heart|Moon|Ankle boot) -->", gallery)


def test_the_recogniser_measures_its_own_test_images(shapes_study):
    workdir, config = shapes_study
    summary = yaml.safe_load((workdir / STUDY / "results" / "recogniser.json").read_text())
    assert summary["n_digits"] == 50 and summary["preprocess"] == "photo"
    answer = yaml.safe_load((workdir / STUDY / "results" / "gui_screenshot.json").read_text())
    assert 0 <= answer["answer"] < 10 and answer["digit"] is not None


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_the_recogniser_page_speaks_of_the_classes(shapes_study, width, height):
    """The page, served with the study's checkpoints and card, in headless Chromium: its title, hint, answer
    and probability bars use the class names; a photo of a test image is uploaded and answered."""
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    from nnstudy.datasets import read_card
    from nnstudy.gui.app import LOOPBACK, create_app
    from nnstudy.gui.models import find_models
    from nnstudy.mnist import load_dataset
    from nnstudy.recogniser import as_drawn_png

    workdir, _ = shapes_study
    results = workdir / STUDY / "results"
    app = create_app(find_models(results), trusted_hosts=LOOPBACK, card=read_card(results))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    image = load_dataset(results / "data" / "mnist_split.npz")["x_test"][3]
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            page.wait_for_selector("body[data-ready=true]")
            expect(page.get_by_test_id("title")).to_have_text("Shapes recogniser")
            expect(page.get_by_test_id("hint")).to_contain_text("Upload a photo of a shape")
            assert "digit" not in page.inner_text("body").lower()
            upload = {"name": "shape.png", "mimeType": "image/png", "buffer": as_drawn_png(image)}
            page.get_by_test_id("file").set_input_files(upload)
            prediction = page.get_by_test_id("prediction")
            expect(prediction).to_have_text(re.compile("^(" + "|".join(CLASSES_EN) + ")$"))
            expect(page.get_by_test_id("bars")).to_contain_text("Ankle boot")
            assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing runs off a phone
            box = prediction.bounding_box()
            assert box is not None and box["x"] + box["width"] <= width
            browser.close()
    finally:
        server.shutdown()
        thread.join()


def test_a_second_dataset_beside_a_finished_study_plans_only_its_own_jobs(study):
    """config/fashion.yaml in a folder that finished the MNIST study: every job of the Fashion-MNIST study is
    planned (none of MNIST's results stands in for it), MNIST's files are untouched and MNIST plans nothing."""
    workdir, _ = study
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workdir / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), str(REPO / "config" / "fashion.yaml"),
           "-n", "--cores", "2"]  # fmt: skip
    fashion = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=600)
    assert fashion.returncode == 0, fashion.stderr[-3000:]
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", fashion.stdout, re.MULTILINE))
    assert planned.get("download_data") == "1" and planned.get("prepare_dataset") == "1", fashion.stdout[-2000:]
    mlp_runs = [p for p in (workdir / "results" / "grid").glob("*/seed*/result.json") if "cnn" not in p.parts[-3]]
    assert int(planned["train"]) == len(mlp_runs)  # a job per seed and cell
    assert (workdir / "studies" / "fashion-mnist" / ".snakemake").is_dir()
    after = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    assert after == before
    mnist = snakemake(workdir, "-n", "--cores", "2")
    assert mnist.returncode == 0 and "Nothing to be done" in mnist.stdout + mnist.stderr


def reordered(value):
    """The same configuration with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def test_the_same_config_with_its_keys_in_another_order_plans_nothing(study):
    """Snakemake compares a rule's parameters as text: they are canonical JSON, so reordering the config's
    keys (or the seed list) reruns no job."""
    workdir, config = study
    shuffled = reordered(config)
    shuffled["grid"]["seeds"] = list(reversed(config["grid"]["seeds"]))
    path = workdir / "reordered.yaml"
    path.write_text(yaml.safe_dump(shuffled, sort_keys=False, allow_unicode=True))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workdir / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(path), "-n", "--cores", "2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_the_committed_fashion_report_speaks_of_garments_not_digits():
    """report/fashion-mnist/, committed from a real run: no digit wording, the classes named, the same
    declared claims as the MNIST study's claims.csv, and its figures labelled with the class names."""
    import pandas as pd

    folder = REPO / "report" / "fashion-mnist"
    en, zh = (folder / "lab_report.en.md").read_text(), (folder / "lab_report.zh.md").read_text()
    assert en.startswith("# Lab report: a three-layer BP network on Fashion-MNIST")
    assert not re.search(r"\bdigits?\b", en, re.IGNORECASE) and "数字" not in zh and "手写" not in zh
    assert "T-shirt/top" in en and "Ankle boot" in en and "踝靴" in zh
    assert "seed's Table 1" not in en and "3.6 Published results beside ours" in en
    fashion, mnist = pd.read_csv(folder / "claims.csv"), pd.read_csv(REPO / "report" / "claims.csv")
    assert set(zip(fashion["claim"], fashion["arm"])) == set(zip(mnist["claim"], mnist["arm"]))
    for lang in ("en", "zh"):
        assert (folder / "figures" / lang / "confusion.png").stat().st_size > 10_000
