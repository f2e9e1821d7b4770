"""The whole study DAG with real Snakemake, MLflow and Optuna on small IDX files the test writes itself."""

from __future__ import annotations

import collections
import copy
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from conftest import REPO, USER_CLAIM, clean_env, launch_chromium, snakemake
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from nnstudy.tracking import study_store


def test_tables(study):
    workdir, config = study
    t1 = pd.read_csv(workdir / "results/tables/table1.csv")
    assert list(zip(t1["arm"], t1["optimizer"])) == [("replication", "adam"), ("replication", "sgd"),
                                                     ("tuned", "adam"), ("tuned", "sgd")]  # fmt: skip
    assert (t1["n"] + t1["n_diverged"] + t1["n_collapsed"] == 2).all()
    t2 = pd.read_csv(workdir / "results/tables/table2.csv")
    assert len(t2) == 16 and set(t2["variant"]) == {"BPNN", "BPNN+BN", "BPNN+DP", "BPNN+BN+DP"}
    ok = t2[t2["n"] > 0]
    assert ((ok["best_val_acc_mean"] > 30) & (ok["best_val_acc_mean"] <= 100)).all()
    assert "±" in (workdir / "results/tables/table2.md").read_text()
    runs = pd.read_csv(workdir / "results/tables/runs.csv")
    assert len(runs) == 36 and set(runs.loc[runs["arm"] == "tuned", "lr_source"]) == {
        "search:lr-adam", "search:lr-sgd", "search:lr-cnn-adam"}  # fmt: skip
    replication = runs[runs["arm"] == "replication"]
    assert set(replication["lr_source"]) == {"replication (the seed report's rate)"}
    assert dict(zip(replication["optimizer"], replication["lr"])) == {"sgd": 0.02, "adam": 0.001}
    t3 = pd.read_csv(workdir / "results/tables/table3.csv")
    assert list(t3["variant"]) == ["BPNN", "CNN"] * 2 and t3["n_params"].tolist() == [25_450, 5_994] * 2


def test_the_study_checks_the_gradients_of_every_kind_of_network_it_trains(study):
    """results/gradcheck.json: one narrowed float64 network per kind in the grid, every parameter checked,
    and the report states the largest error it found."""
    from nnstudy.report import fmt_sci

    workdir, _ = study
    check = json.loads((workdir / "results/gradcheck.json").read_text())
    names = [n["network"] for n in check["networks"]]
    assert sorted(names) == sorted(["BPNN", "BPNN+BN", "BPNN+DP (p = 0.5)", "BPNN+BN+DP (p = 0.5)", "CNN"])
    assert 0 < check["max_relative_error"] < check["threshold"] == 1e-6
    assert check["max_relative_error"] == max(n["max_relative_error"] for n in check["networks"])
    for lang in ("en", "zh"):
        assert fmt_sci(check["max_relative_error"], 1) in (workdir / f"report/lab_report.{lang}.md").read_text()


def test_the_recogniser_is_measured_on_test_digits_through_its_own_path(study, tmp_path):
    """Task 4: results/recogniser.json holds the GUI's two models (the best BP network and CNN by validation
    accuracy, as the GUI picks them) on the configured number of test digits, through the GUI's path and fed
    directly; the report's section 3.7 states those numbers; with no checkpoint the file says so."""
    from nnstudy.gui.models import find_models
    from nnstudy.recogniser import evaluate_recogniser

    workdir, config = study
    check = json.loads((workdir / "results/recogniser.json").read_text())
    assert check["n_digits"] == config["report"]["recogniser_digits"] == 100
    picked = [str(c.path.relative_to(workdir)) for c in find_models(workdir / "results")]
    assert [m["checkpoint"] for m in check["models"]] == picked
    assert {m["model"] for m in check["models"]} == {"mlp", "cnn"}
    text = (workdir / "report/lab_report.en.md").read_text().split("### 3.7")[1].split("## 4 Discussion")[0]
    for m in check["models"]:
        assert 0 <= m["accuracy_gui"] <= 1 and 0.5 < m["accuracy_direct"] <= 1 and len(m["predictions"]) == 100
        assert re.search(rf"\|\s*{100 * m['accuracy_gui']:.1f}\s*\|\s*{100 * m['accuracy_direct']:.1f}\s*\|", text)
    assert (workdir / "report/figures/en/recogniser.png").stat().st_size > 10_000
    data = workdir / "results/data/mnist_split.npz"
    empty = evaluate_recogniser(tmp_path, data, tmp_path / "r.json", tmp_path / "r.png")
    assert empty["models"] == [] and "no finished run with a checkpoint under" in empty["note"]  # the report says so


def test_claims_csv_holds_every_claim_of_both_arms(study):
    """claims.csv: every declared claim of the default config in both arms (components beside their
    composite), Holm-adjusted within each family, with verdicts from the three allowed words; the epochs
    claims by the sign-flip test, the accuracy claims by the t-test."""
    workdir, config = study
    claims = pd.read_csv(workdir / "results/tables/claims.csv")
    declared = [c["id"] for c in config["protocol"]["claims"]]
    declared += [p["id"] for c in config["protocol"]["claims"] for p in c.get("components", [])]
    for arm in ("replication", "tuned"):
        assert sorted(claims.loc[claims["arm"] == arm, "claim"]) == sorted(declared), arm
    assert list(dict.fromkeys(claims["family"])) == ["seed", "extension"]
    assert set(claims["method"]) == {"t", "sign-flip"}
    assert (claims.loc[claims["metric"] == "epochs_to_best", "method"] == "sign-flip").all()
    assert set(claims["verdict"]) <= {"supported", "contradicted", "inconclusive"}
    tested = claims[claims["role"] == "claim"]
    assert (tested["p_holm"] >= tested["p_value"] - 1e-12).all() and claims["n"].eq(2).all()
    assert ((claims["ci_low"] <= claims["estimate"] + 1e-9) & (claims["estimate"] <= claims["ci_high"] + 1e-9)).all()


def test_the_console_closes_with_where_to_look(study):
    """A successful run's last lines name the report, the MLflow UI command and the recogniser."""
    workdir, _ = study
    tail = (workdir / "console.txt").read_text().rstrip().splitlines()[-8:]
    text = "\n".join(tail)
    assert "report/lab_report.en.html" in text and "mlflow ui" in text and "nnstudy-gui" in text, text


def test_a_claim_declared_in_a_users_config_is_tested_and_reported(study):
    """The session study's config adds a claim of its own (conftest.USER_CLAIM): it gets its rows in
    claims.csv, on its own metric, and its sentence in the report in both languages, with no code change."""
    workdir, config = study
    claims = pd.read_csv(workdir / "results/tables/claims.csv")
    rows = claims[claims["claim"] == USER_CLAIM["id"]]
    assert list(rows["arm"]) == ["replication", "tuned"] and set(rows["metric"]) == {"best_val_acc"}
    assert set(rows["family"]) == {"extension"} and rows["p_value"].notna().all()
    for lang in ("en", "zh"):
        text = (workdir / f"report/lab_report.{lang}.md").read_text()
        assert text.count(USER_CLAIM["statement"][lang]) >= 3  # the verdict grid and the claims table (both arms)
    budget = pd.read_csv(workdir / "results/tables/budget.csv")
    assert set(budget["study"]) == {"lr-sgd", "lr-adam", "lr-cnn-adam"}
    for _, curve in budget.groupby("study"):  # the expected best never falls as the budget grows
        assert curve["expected_best_val_acc"].is_monotonic_increasing


def test_figures(study):
    workdir, config = study
    for name in ("curves_sgd", "curves_adam", "grid_comparison", "deep_vs_shallow", "search_history", "lr_vs_accuracy",
                 "search_budget", "claims_forest", "confusion", "misclassified", "first_layer_weights"):  # fmt: skip
        png = workdir / f"results/figures/{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
        assert b"<svg" in (workdir / f"results/figures/{name}.svg").read_bytes()[:2000]
    # the model figures show the recogniser's checkpoints (find_models), classified on the whole test split
    summary = json.loads((workdir / "results/model_figures.json").read_text())
    recogniser = json.loads((workdir / "results/recogniser.json").read_text())
    assert sorted(m["checkpoint"] for m in summary["models"]) == sorted(m["checkpoint"] for m in recogniser["models"])
    for m in summary["models"]:
        assert sum(map(sum, m["confusion"])) == summary["n_test"] == config["data"]["test_size"]


def test_mlflow_runs(study):
    workdir, config = study
    uri, experiments = study_store(workdir)
    client = MlflowClient(uri)
    grid = client.search_runs([experiments["grid"]], max_results=1000)
    assert len(grid) == 36 and {r.data.tags["arm"] for r in grid} == {"replication", "tuned"}
    for run in grid:
        assert run.info.status in ("FINISHED", "FAILED")
        for key in ("lr", "optimizer", "batchnorm", "dropout", "seed", "dataset_digest", "git_commit",
                    "train.batch_size", "train.patience"):  # fmt: skip
            assert key in run.data.params, key
        assert {"study", "cell", "seed", "status"} <= set(run.data.tags)
        result = json.loads(
            (workdir / f"results/grid/{run.data.tags['cell']}/seed{run.data.tags['seed']}/result.json").read_text()
        )
        assert result["mlflow_run_id"] == run.info.run_id
        if run.info.status == "FINISHED":
            assert {"best_val_acc", "test_acc", "epochs_to_best", "wall_time"} <= set(run.data.metrics)
            history = client.get_metric_history(run.info.run_id, "epoch_val_acc")
            assert [m.step for m in history] == result["history"]["epoch"]
            assert run.data.metrics["val_acc"] == run.data.metrics["best_val_acc"] == result["best_val_acc"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"result.json", "model.npz"}
    search = client.search_runs([experiments["lr-search"]], max_results=1000)
    parents = [r for r in search if r.data.tags.get("role") == "parent"]
    trials = [r for r in search if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 3 and all(p.info.status == "FINISHED" for p in parents)
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {p.info.run_id for p in parents}
    for t in trials:  # each trial keeps its history, and its checkpoint when it was not pruned
        names = {a.path for a in client.list_artifacts(t.info.run_id)}
        assert names == ({"history.json"} if t.data.tags["status"] == "pruned" else {"history.json", "model.npz"})
    n_optuna = 0
    for name, n_trials in (("lr-sgd", config["search"]["n_trials"]), ("lr-adam", config["search"]["n_trials"]),
                           ("lr-cnn-adam", config["cnn"]["n_trials"])):  # fmt: skip
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(workdir / "results/search/optuna.journal"))
        )
        opt = optuna.load_study(study_name=f"test-study.{name}", storage=storage)
        finished = [t for t in opt.trials if t.state.is_finished() and t.state.name != "FAIL"]
        assert len(finished) >= n_trials
        n_optuna += len(opt.trials)
        best = json.loads((workdir / f"results/search/{name}/best.json").read_text())
        assert best["lr"] == opt.best_trial.params["lr"]
    assert len(trials) == n_optuna


def dry_run_with(workdir, config) -> subprocess.CompletedProcess:
    """What Snakemake would do in the finished study with another config (the study's own is put back)."""
    (workdir / "config.yaml").rename(workdir / "config.orig.yaml")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    try:
        return snakemake(workdir, "-n", "--cores", "2")
    finally:
        (workdir / "config.orig.yaml").replace(workdir / "config.yaml")


def test_rerun_does_nothing_and_a_changed_cell_reruns_only_that_cell(study):
    workdir, config = study
    proc = snakemake(workdir, "-n", "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    fallback = copy.deepcopy(config)
    fallback["grid"]["fallback_lr"] = {"sgd": 0.05, "adam": 0.001}  # the default but for SGD's 0.02
    planned = re.findall(r"output: results/grid/(\S+)/seed", dry_run_with(workdir, fallback).stdout)
    assert planned and all(cell.startswith("sgd-") for cell in planned), planned
    config = copy.deepcopy(config)
    config["grid"]["dropout"] = [0.0, 0.3]
    proc = dry_run_with(workdir, config)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    # a job per seed and cell: 2 arms x 2 optimizers x 2 BN x dp0.3, each seed
    assert counts.get("train") == str(8 * len(config["grid"]["seeds"])), proc.stdout
    assert "search_round" not in counts and "download_data" not in counts
    assert counts.get("tables") == "1" and counts.get("figures") == "1"
    assert re.findall(r"output: results/grid/(\S+)/seed", proc.stdout) and all(
        "dp0.3" in c for c in re.findall(r"output: results/grid/(\S+)/seed", proc.stdout)
    )


def planned_rules(workdir: Path, config: dict) -> dict[str, int]:
    proc = dry_run_with(workdir, config)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M) if rule != "total"}


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("protocol", "primary_metric", "best_val_acc", {"tables", "figures", "lab_report", "register_models"}),
        ("protocol", "alpha", 0.01, {"tables", "figures", "lab_report", "register_models"}),
        ("mlflow", "log_models", False, {"register_models", "lab_report"}),
        ("report", "recogniser_digits", 50, {"recogniser", "lab_report"}),
    ],
)
def test_an_edited_key_reruns_the_jobs_that_read_it(study, section, key, value, expected):
    """Every config key a job reads is one of its parameters: an edit plans the jobs that read it (and those
    after them), and no training."""
    workdir, config = study
    edited = copy.deepcopy(config)
    assert edited[section].get(key) != value
    edited[section][key] = value
    planned = planned_rules(workdir, edited)
    assert expected <= set(planned), planned
    assert not {"train", "train_cnn", "search_setup", "search_round"} & set(planned), planned


def test_keys_that_change_no_output_rerun_nothing(study):
    """How patiently to fetch the data or wait for a server changes no result: editing all such keys reruns
    only the report, which states the configuration's digest (as a download's parameter, a new timeout
    would rewrite the data and so rerun the whole study). One plan for the five keys: any of them that
    were a job's parameter would plan that job."""
    workdir, config = study
    edited = copy.deepcopy(config)
    for section, key, value in [("data", "timeout_s", 7.5), ("data", "file_deadline_s", 99.0),
                                ("data", "min_bytes_per_s", 1), ("mlflow", "server_check_timeout_s", 99.0),
                                ("mlflow", "http_timeout_s", 99.0)]:  # fmt: skip
        assert edited[section].get(key) != value
        edited[section][key] = value
    planned = planned_rules(workdir, edited)
    assert planned and set(planned) <= {"lab_report", "all"}, planned


def test_a_renamed_study_reruns_its_searches_and_trainings(study):
    """The study's name names its Optuna studies and is written into every result: a rename is a new study."""
    workdir, config = study
    renamed = copy.deepcopy(config)
    renamed["study_name"] = "renamed-study"
    planned = planned_rules(workdir, renamed)
    assert planned.get("search_setup") and planned.get("train") and planned.get("register_models"), planned


def test_an_edited_primary_metric_changes_the_claims(study, tmp_path):
    """The claims follow protocol.primary_metric once it is edited: the tables job is rerun and every accuracy
    claim is now tested on the new metric."""
    workdir, config = study
    work = tmp_path / "metric"
    shutil.copytree(workdir, work, symlinks=True)
    before = pd.read_csv(work / "results/tables/claims.csv")
    assert "test_acc" in set(before["metric"])
    edited = copy.deepcopy(config)
    edited["protocol"]["primary_metric"] = "best_val_acc"
    (work / "config.yaml").write_text(yaml.safe_dump(edited))
    proc = snakemake(work, "--cores", "2", "results/tables/claims.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = pd.read_csv(work / "results/tables/claims.csv")
    assert "test_acc" not in set(after["metric"]) and "best_val_acc" in set(after["metric"])
    counts = before["metric"].value_counts()
    assert after["metric"].value_counts()["best_val_acc"] == counts["test_acc"] + counts.get("best_val_acc", 0)
    assert set(after["metric"]) == set(before["metric"]) - {"test_acc"} | {"best_val_acc"}


def artifact_files(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results/mlflow/artifacts").rglob("*") if p.is_file()}


def test_a_copied_study_folder_plans_nothing_and_writes_only_into_its_own_stores(study, tmp_path):
    workdir, config = study
    copy_dir = tmp_path / "moved study"
    shutil.copytree(workdir, copy_dir, symlinks=True)  # keeps modification times, as cp -a and mv do
    proc = snakemake(copy_dir, "-n", "--cores", "2")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    original_uri, experiments = study_store(workdir)
    grid_runs = MlflowClient(original_uri).search_runs([experiments["grid"]], max_results=1000)
    original_files = artifact_files(workdir)
    target = sorted(str(p.relative_to(workdir)) for p in (workdir / "results/grid").glob("*/seed*/result.json"))[0]
    proc = snakemake(copy_dir, "--cores", "1", target, "--forcerun", target)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the original's store and artifacts are untouched
    assert len(MlflowClient(original_uri).search_runs([experiments["grid"]], max_results=1000)) == len(grid_runs)
    assert artifact_files(workdir) == original_files
    # the copy logged the new run into its own store, and every artifact location there is its own
    copy_uri, copy_experiments = study_store(copy_dir)
    assert copy_uri == f"sqlite:///{copy_dir.resolve() / 'results/mlflow/mlflow.db'}"
    client = MlflowClient(copy_uri)
    runs = client.search_runs([copy_experiments["grid"]], max_results=1000)
    cell_results = [copy_dir / target]  # a job per seed: only the target's seed is trained again
    assert len(runs) == len(grid_runs) + 1
    own = (copy_dir / "results/mlflow/artifacts").resolve().as_uri()
    assert all(run.info.artifact_uri.startswith(own + "/") for run in runs)
    assert {client.get_experiment(i).artifact_location for i in copy_experiments.values()} == {
        f"{own}/{kind}" for kind in copy_experiments
    }
    new_runs = {run.info.run_id for run in runs} - {run.info.run_id for run in grid_runs}
    assert new_runs == {json.loads(p.read_text())["mlflow_run_id"] for p in cell_results}
    assert artifact_files(copy_dir) > original_files


def test_an_added_seed_trains_only_that_seed(study, tmp_path):
    """A seed added to the grid is one new training per cell: the plan names no earlier seed, no earlier
    result or checkpoint is rewritten, and MLflow gains one run per cell, none of the earlier ones superseded."""
    workdir, config = study
    work = tmp_path / "more seeds"
    shutil.copytree(workdir, work, symlinks=True)
    grown = copy.deepcopy(config)
    new_seed = max(config["grid"]["seeds"]) + 1
    grown["grid"]["seeds"] = [*config["grid"]["seeds"], new_seed]
    (work / "config.yaml").write_text(yaml.safe_dump(grown))
    plan = snakemake(work, "-n", "--cores", "2")
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = set(re.findall(r"output: results/grid/([^/\s]+)/seed(\d+)/result\.json", plan.stdout))
    cells = {p.parts[-3] for p in work.glob("results/grid/*/seed*/result.json")}
    assert planned == {(cell, str(new_seed)) for cell in cells}, sorted(planned)

    before = {p: p.stat().st_mtime_ns for p in work.glob("results/grid/*/seed*/*") if p.is_file()}
    uri, experiments = study_store(work)
    old_runs = {r.info.run_id: r for r in MlflowClient(uri).search_runs([experiments["grid"]], max_results=1000)}
    trained = sorted(cells)[:2]  # two cells train it for real (each training job costs seconds of start-up)
    targets = [f"results/grid/{cell}/seed{new_seed}/result.json" for cell in trained]
    proc = snakemake(work, "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    runs = {r.info.run_id: r for r in MlflowClient(uri).search_runs([experiments["grid"]], max_results=1000)}
    added = set(runs) - set(old_runs)
    assert len(added) == len(trained)
    assert {runs[i].data.tags["seed"] for i in added} == {str(new_seed)}
    assert all(runs[i].data.tags == old_runs[i].data.tags for i in old_runs)  # none superseded or changed


def test_snakemake_report(study):
    workdir, config = study
    proc = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (workdir / "report.html").read_text()
    assert len(report) > 50_000
    # each figure once, as PNG; tables as HTML pages shown in place, not CSV downloads (the report's results
    # are entries with a "filename"; other mentions of a file are the rules' lists of inputs and outputs)
    shown = collections.Counter(re.findall(r'"filename": "([^"]+)"', report))
    for name in ("curves_sgd", "curves_adam", "grid_comparison", "deep_vs_shallow", "search_history"):
        assert shown[f"{name}.png"] == 1 and not shown[f"{name}.svg"], (name, shown)
    for name in ("table1", "table2", "table3", "runs", "comparisons"):
        assert shown[f"{name}.html"] == 1 and not shown[f"{name}.csv"], (name, shown)
    table1 = (workdir / "results/tables/table1.html").read_text()
    assert table1.count("<tr>") == 1 + len(pd.read_csv(workdir / "results/tables/table1.csv"))
    assert '<td class="num">' in table1 and '<td class="text">SGD</td>' in table1  # display name
    assert shown["recogniser.png"] == 1
    # entries are listed by what they show, not by file name
    for label in ("The lab report (en)", "Learning curves, SGD (both arms)", "The recogniser on test images"):
        assert f'"{label}"' in report, label
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto((workdir / "report.html").as_uri())
        page.get_by_text("Lab report", exact=True).click()
        page.locator("tr", has_text="The lab report (en)").locator("a").first.click()
        heading = page.frame_locator("iframe").locator("h1").first
        heading.wait_for(timeout=120_000)  # a blocked data URL would leave the pane at about:blank
        assert heading.inner_text().startswith("Lab report:")
        # on a phone: the sidebar covers the pane until closed (its button at the top); then the report fills
        # the screen and only its wide tables scroll sideways, each inside its own box
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.goto((workdir / "report.html").as_uri())
        phone.get_by_text("Lab report", exact=True).click()
        phone.locator("tr", has_text="The lab report (en)").locator("a").first.click()
        phone.frame_locator("iframe").locator("h1").first.wait_for(timeout=120_000)
        close = [a for a in phone.locator("a[type=button]").all() if (box := a.bounding_box()) and box["x"] >= 0
                 and box["y"] < 40]  # fmt: skip
        close[0].click()
        phone.wait_for_function("() => document.querySelector('iframe').getBoundingClientRect().width >= 389")
        pane = phone.frame_locator("iframe")
        assert pane.locator("h1").first.is_visible()
        width, visible = pane.locator("html").evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert width <= visible == 390, (width, visible)
        browser.close()


def test_the_committed_lab_reports_fit_in_snakemake_reports_pane():
    """snakemake --report embeds each HTML page as a data URL, which Chromium refuses over 2 MB: the committed
    reports (the default study's full set of figures) stay under the limit the report job warns at."""
    from nnstudy.report import SCREEN_PAGE_LIMIT

    for page in [*REPO.glob("report/lab_report.*.html"), *REPO.glob("report/*/lab_report.*.html")]:
        assert page.stat().st_size < SCREEN_PAGE_LIMIT, page
        assert 4 * -(-page.stat().st_size // 3) < 2 * 1024 * 1024  # as base64


def test_default_config_dry_run_plans_each_arm_and_every_rule(tmp_path):
    """The default protocol: one search per cell of the tuned arm (8 BP-network cells and the CNN), each
    with the same budget (two rounds, one job each), and every cell of both arms with each of its seeds
    (16, planned; the CNN 5)."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "-s", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(REPO / "config/config.yaml")],
        capture_output=True, text=True, timeout=600, env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    expected = dict(download_data="1", prepare_dataset="1", mlflow_store="1", search_setup="9", search_round="18",
                    search_export="9", train=str(16 * 16), train_cnn="10", tables="1", figures="1", lab_report="2",
                    register_models="1", gradient_check="1", recogniser="1", model_figures="1", gui_screenshot="1",
                    all="1")  # fmt: skip
    assert {k: counts.get(k) for k in expected} == expected
    planned = set(re.findall(r"results/grid/([^/\s]+)/seed(\d+)/result\.json", proc.stdout))
    assert len(planned) == 2 * (8 * 16 + 5)  # every training of both arms, 16 seeds a cell and 5 of the CNN
    cells = {f"{o}-bn{b}-dp{p}" for o in ("sgd", "adam") for b in (0, 1) for p in ("0", "0.5")} | {"cnn-adam-bn0-dp0"}
    assert {cell for cell, _ in planned} == cells | {f"rep-{cell}" for cell in cells}
    setups = set(re.findall(r"output: results/search/(\S+)/setup.json", proc.stdout))
    assert setups == {f"lr-{cell}" for cell in cells}


def test_mlflow_and_optuna_conventions(study):
    """System tags, a logged dataset and checkpoint per grid run, registered best models loadable as pyfunc, pruned
    trials FINISHED, named Optuna objectives and study attributes, and trials and runs naming each other."""
    import mlflow
    import numpy as np

    from nnstudy.mnist import load_dataset

    workdir, config = study
    uri, experiments = study_store(workdir)
    client = MlflowClient(uri)
    for kind in ("grid", "lr-search"):
        assert client.get_experiment(experiments[kind]).tags["mlflow.experimentKind"] == ("custom_model_development")
    grid = client.search_runs([experiments["grid"]], "attributes.status = 'FINISHED'", max_results=1000)
    assert grid
    for run in grid:
        tags = run.data.tags
        assert len(tags["mlflow.source.git.commit"]) == 40 and tags["mlflow.user"] and tags["mlflow.source.name"]
        assert tags["cell"] in tags["mlflow.note.content"]
        assert tags["protocol.primary_metric"] == "test_acc" and tags["protocol.arms"] == "replication,tuned"
        [dataset] = run.inputs.dataset_inputs
        assert dataset.dataset.digest and dataset.dataset.name == "mnist-split"
        assert {"model.npz", "result.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    registered = json.loads((workdir / "results/mlflow/registered.json").read_text())
    assert set(registered) == {"mlp", "cnn"}
    data = load_dataset(workdir / "results/data/mnist_split.npz")
    mlflow.set_tracking_uri(uri)
    for entry in registered.values():
        model = mlflow.pyfunc.load_model(f"models:/{entry['name']}/{entry['version']}")
        probabilities = model.predict(data["x_test"].reshape(-1, 784))
        result = json.loads((workdir / f"results/grid/{entry['cell']}/seed{entry['seed']}/result.json").read_text())
        assert probabilities.shape == (len(data["y_test"]), 10)
        assert np.mean(probabilities.argmax(1) == data["y_test"]) == pytest.approx(result["test_acc"])
        # uint8 pixels, 28 x 28 images and a DataFrame give the same answer, with no warning on load
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = mlflow.pyfunc.load_model(f"models:/{entry['name']}@champion")
        assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
        pixels = np.rint(data["x_test"][:20] * 255).astype(np.uint8)
        expected = loaded.predict(pixels.astype(np.float32) / 255)
        for given in (pixels, pixels.reshape(-1, 28, 28), pd.DataFrame(pixels.reshape(-1, 784))):
            np.testing.assert_allclose(loaded.predict(given), expected, rtol=1e-6)
        with pytest.raises(Exception, match=r"784 pixels each .* got an array of shape \(3, 5\)"):
            loaded.predict(np.zeros((3, 5), np.float32))
        version = client.get_model_version_by_alias(entry["name"], "champion")
        assert str(version.version) == str(entry["version"]) and "highest validation accuracy" in version.description
        assert version.tags["cell"] == entry["cell"] and version.tags["chosen_on"] == "validation accuracy"
        assert version.tags["training_data"].startswith("results/data/") and version.tags["test_acc"]
        assert client.get_model_version_by_alias(entry["name"], "best").version == version.version
        # logging the model reopened the finished run: its end (so its duration) is still the training's
        logged = mlflow.get_logged_model(entry["model_id"])
        assert logged.name == f"{entry['cell']}-seed{entry['seed']}"
        # its source is the rule that logged it, not Snakemake's temporary copy of the script
        assert logged.tags["mlflow.source.name"] == "workflow/rules/aggregate.smk:register_models", logged.tags
        assert logged.tags["mlflow.source.git.commit"] == version.tags["git_commit"].removesuffix("-dirty")
        assert client.get_run(entry["run_id"]).info.end_time < logged.creation_timestamp
    parents = client.search_runs([experiments["lr-search"]], "tags.role = 'parent'", max_results=100)
    n_trials = {p.data.tags["search"]: p.data.params["n_trials"] for p in parents}
    assert n_trials == {"lr-sgd": "4", "lr-adam": "4", "lr-cnn-adam": str(config["cnn"]["n_trials"])}
    best = json.loads((workdir / "results/search/lr-cnn-adam/best.json").read_text())
    assert (best["optimizer"], best["arch"], best["cell"]) == ("adam", "cnn", "cnn-adam-bn0-dp0")
    search = client.search_runs([experiments["lr-search"]], "tags.status = 'pruned'", max_results=1000)
    assert search and all(r.info.status == "FINISHED" for r in search)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(workdir / "results/search/optuna.journal"))
    )
    opt = optuna.load_study(study_name="test-study.lr-adam", storage=storage)
    assert opt.metric_names == ["best_val_acc"]
    assert opt.user_attrs["cell"] == "adam-bn0-dp0" and opt.user_attrs["mlflow_parent_run_id"]
    for trial in opt.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["trial"] == str(trial.number) and run.data.tags["slot"] == str(trial.user_attrs["slot"])


def test_quick_config_plans_the_whole_protocol(tmp_path):
    """config/quick.yaml, as a user gives it (after the default config): valid, and it plans the whole
    protocol: both arms with its seeds, a search per cell of the tuned arm with its budget, the CNN, and
    the report in its languages. (Its rules run for real in the session study; the per-cell searches in
    the SLURM study and its local reference run. A real run of it took 8 to 9 minutes of the suite.)"""
    quick = yaml.safe_load((REPO / "config/quick.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "-s", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(REPO / "config/config.yaml"), str(REPO / "config/quick.yaml")],
        capture_output=True, text=True, timeout=600, env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    rounds = -(-quick["search"]["n_trials"] // quick["search"]["batch_size"]) * quick["search"]["workers"]
    expected = dict(search_setup="9", search_round=str(9 * rounds), search_export="9",
                    train=str(16 * len(quick["grid"]["seeds"])),
                    train_cnn=str(2 * len(quick["cnn"]["seeds"])), lab_report=str(len(quick["report"]["languages"])),
                    tables="1", figures="1")  # fmt: skip
    assert {k: counts.get(k) for k in expected} == expected
    planned = set(re.findall(r"results/grid/([^/\s]+)/seed(\d+)/result\.json", proc.stdout))
    assert {int(seed) for cell, seed in planned if "cnn" not in cell} == set(quick["grid"]["seeds"])
    assert {int(seed) for cell, seed in planned if "cnn" in cell} == set(quick["cnn"]["seeds"])
    assert len(set(re.findall(r"output: results/search/(\S+)/setup.json", proc.stdout))) == 9


def test_the_documented_model_snippet_runs_as_written(study):
    """docs/outputs.md's snippet that loads the best registered model, run as a user would in the study's
    folder (only the study's name differs): it defines its own input and prints the test accuracy."""
    workdir, config = study
    text = (REPO / "docs" / "outputs.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "load_model" in block)
    code = snippet.replace("mnist-bp-best-cnn", f"{config['study_name']}-best-cnn")
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning:nnstudy", "-c", code], cwd=workdir,
                          capture_output=True, text=True, timeout=300, env=clean_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", proc.stdout).group(1))
    registered = json.loads((workdir / "results/mlflow/registered.json").read_text())["cnn"]
    result = json.loads(
        (workdir / f"results/grid/{registered['cell']}/seed{registered['seed']}/result.json").read_text()
    )
    assert accuracy == pytest.approx(result["test_acc"])


def documented_server(workdir: Path, log: Path, command: list[str], ready: str, env: dict | None = None):
    """A server command as the docs give it, on a free port of 127.0.0.1 (``{port}`` in ``command``), run in
    the study's folder until ``ready`` (a path) answers; returns the port and a function that stops it."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [part.replace("{port}", str(port)) for part in command], cwd=workdir, stdout=open(log, "wb"),
        stderr=subprocess.STDOUT, env=env or clean_env(), start_new_session=True,
    )  # fmt: skip
    give_up = time.monotonic() + 900  # only against a server that hangs without exiting
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < give_up, log.read_text()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=5).close()
            break
        except OSError:
            time.sleep(0.2)
    return port, lambda: (os.killpg(server.pid, signal.SIGTERM), server.wait(timeout=60))


def mlflow_ui(workdir: Path, log: Path):
    """The documented `mlflow ui` command on the study's store."""
    command = [sys.executable, "-m", "mlflow", "ui", "--workers", "1", "--backend-store-uri",
               "sqlite:///results/mlflow/mlflow.db", "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    return documented_server(workdir, log, command, "/health",
                             env={**clean_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # fmt: skip


def test_optuna_dashboard_lists_every_search_and_shows_its_metric(study, tmp_path):
    """The documented optuna-dashboard command on the study's journal, in Chromium: at desktop width every
    search is listed and opens on its history of best_val_acc (the objective's name, not "Objective 0");
    at phone width the list shows every search too (a study's page is wider than a phone: the dashboard's
    own layout, docs/outputs.md)."""
    workdir, _ = study
    names = sorted(json.loads(p.read_text())["storage_name"] for p in workdir.glob("results/search/*/setup.json"))
    assert len(names) == 3, names
    command = [str(Path(sys.executable).parent / "optuna-dashboard"), "results/search/optuna.journal", "--host",
               "127.0.0.1", "--port", "{port}"]  # fmt: skip
    port, stop = documented_server(workdir, tmp_path / "dashboard.log", command, "/api/studies")
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.goto(f"http://127.0.0.1:{port}/dashboard")
            for name in names:
                phone.get_by_text(name).first.wait_for(timeout=120_000)
                assert phone.get_by_text(name).first.is_visible(), name
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/dashboard")
            page.get_by_text(names[0]).first.click()
            page.get_by_text("best_val_acc").first.wait_for(timeout=120_000)  # the history's y axis
            assert "/dashboard/studies/" in page.url and page.get_by_role("heading", name="History").is_visible()
            assert "Objective 0" not in page.inner_text("body")
            browser.close()
    finally:
        stop()


def test_the_closing_link_opens_mlflow_on_the_grids_runs(study, tmp_path):
    """The console's last lines give the grid's runs view as a link: in Chromium, at desktop and phone widths,
    it shows the runs (named seed first), not MLflow 3's GenAI overview, and the registered best MLP's page
    its alias, source run and description; and from the experiments list,
    choosing "Model training" once makes a click on the experiment land on its runs."""
    workdir, _ = study
    console = (workdir / "console.txt").read_text()
    link = re.search(r"then (http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning)", console)
    assert link, console[-2000:]
    port, stop = mlflow_ui(workdir, tmp_path / "mlflow-ui.log")
    url = link.group(1).replace(":5000/", f":{port}/")
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            for width, height in ((1400, 900), (390, 844)):
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url)
                page.get_by_text(re.compile(r"^seed \d+ · ")).first.wait_for(timeout=120_000)
                assert "/runs" in page.url and "Token Usage" not in page.inner_text("body")
                # the registered best MLP's page (docs/outputs.md): its aliases, source run and description
                best = json.loads((workdir / "results/mlflow/registered.json").read_text())["mlp"]
                page.goto(f"http://127.0.0.1:{port}/#/models/{best['name']}/versions/{best['version']}")
                page.get_by_text("Chosen on validation accuracy", exact=False).first.wait_for(timeout=120_000)
                body = page.inner_text("body")
                assert "champion" in body and f"seed {best['seed']} · {best['cell']}" in body, body[:2000]
                page.close()
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/#/experiments")
            page.get_by_text("Model training", exact=True).first.click()
            page.get_by_text("nnstudy/grid").first.click()
            page.get_by_text(re.compile(r"^seed \d+ · ")).first.wait_for(timeout=120_000)
            assert re.search(r"#/experiments/\d+/runs", page.url), page.url
            browser.close()
    finally:
        stop()
