"""Configuration checks: schema and semantic errors name the key and stop the workflow before any job."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from nnstudy.config import (
    Cell,
    ConfigError,
    cell_seeds,
    check_config,
    fallback_lr,
    grid_cells,
    search_settings,
    study_cell,
    study_for_cell,
    study_names,
    train_options,
    untestable_claims,
)
from nnstudy.training import TrainSettings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def default_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(SCHEMA))
    return config


def test_defaults_fill_missing_sections():
    config = {"study_name": "x"}
    validate(config, str(SCHEMA))
    assert config["training"]["patience"] == 3 and config["search"]["pruner"]["n_startup_trials"] == 5
    assert config["grid"]["fallback_lr"] == {"sgd": 0.02, "adam": 0.001}
    check_config(config)


def test_default_grid_is_the_seed_study():
    config = default_config()
    cells = grid_cells(config)
    names = [c.name for c in cells]
    assert len(names) == 18 and names[:9] == ["rep-" + name for name in names[9:]]
    assert "adam-bn1-dp0.5" in names and names[-1] == "cnn-adam-bn0-dp0" and names[8] == "rep-cnn-adam-bn0-dp0"
    # the tuned arm: one search per cell, each with the same budget; the replication arm: none
    assert study_names(config) == sorted(f"lr-{c.name}" for c in cells if c.arm == "tuned")
    assert {search_settings(config, c)["n_trials"] for c in cells if c.arch == "mlp"} == {10}
    assert [study_for_cell(config, c) for c in cells if c.arm == "replication"] == [None] * 9
    assert study_cell(config, "lr-cnn-adam-bn0-dp0") == Cell("adam", False, 0.0, "cnn")
    assert Cell.parse("rep-cnn-adam-bn0-dp0") == Cell("adam", False, 0.0, "cnn", "replication")
    assert Cell.parse("cnn-adam-bn0-dp0").arch == "cnn" and Cell.parse("cnn-adam-bn0-dp0").variant == "CNN"
    assert len(config["grid"]["seeds"]) == 16 and cell_seeds(config, cells[-1]) == [1, 2, 3, 4, 5]
    config["search"]["per_cell"] = False
    assert study_names(config) == ["lr-adam", "lr-cnn-adam", "lr-sgd"]
    assert Cell.parse("sgd-bn0-dp0").variant == "BPNN" and Cell.parse("sgd-bn1-dp0.5").variant == "BPNN+BN+DP"


@pytest.mark.parametrize(
    "path,value,message",
    [
        (("grid", "optimizers"), [], "grid.optimizers is empty"),
        (("grid", "seeds"), [], "grid.seeds is empty"),
        (("grid", "fallback_lr"), {"sgd": -0.1, "adam": 0.001}, "grid.fallback_lr.sgd: learning rate must be"),
        (("grid", "fallback_lr"), {"sgd": 0.1, "lion": 0.001}, "unknown optimizer 'lion'"),
        (("search", "lr_range"), {"sgd": [0.1, 0.01], "adam": [1e-4, 1e-2]}, r"search.lr_range.sgd: low \(0.1\)"),
        (("search", "lr_range"), {"sgd": [0.0, 0.1], "adam": [1e-4, 1e-2]}, "must be > 0"),
        (("search", "lr_range"), {"adam": [1e-4, 1e-2]}, "search.lr_range lacks optimizer 'sgd'"),
        (("study_name",), "../escape", "study_name: '../escape' is not a safe name"),
        (("mlflow", "experiment_prefix"), "a/b", "is not a safe name"),
        (("data", "train_size"), 55000, "exceeds 60000"),
        (("protocol", "replication_lr"), {"sgd": 0.02}, r"protocol.replication_lr lacks \['adam'\]"),
        (("cnn", "seeds"), [1, 17], r"cnn.seeds \[17\] are not in grid.seeds"),
        (("grid", "dropout"), [0.0, 0.5, 0.5000001], "name the same cell twice"),
        (("training", "hidden"), [16384, 16384, 16384], r"training.hidden: MLPSpec has 5\d\d,\d{3},\d{3} parameters"),
        (("search", "trial_seed_base"), 5, r"grid.seeds and search seeds .* share seeds \[5, 6"),
        (("protocol", "pilot", "seeds"), [3, 901], r"grid.seeds and protocol.pilot.seeds share seeds \[3\]"),
        (("protocol", "claims", 0, "id"), "adam_epochs", "the id 'adam_epochs' is used twice"),
        (("data", "name"), "kmnist", r"data.sha256 lacks \['t10k-images-idx3-ubyte.gz'.*data.name: kmnist"),
        (("data", "classes", "en"), ["a"] * 10, "data.classes.en repeats a name"),
        (("output_dir",), "../elsewhere", "output_dir: '../elsewhere' must be a relative path inside"),
        (("output_dir",), "/abs/path", "must be a relative path inside"),
        (("output_dir",), "studies/a b", "'a b' is not a safe folder name"),
    ],
)
def test_semantic_errors_name_the_key(path, value, message):
    config = copy.deepcopy(default_config())
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def run_dry(tmp_path, config_text: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config_text)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(cfg)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize(
    "text,expected",
    [
        ("grid:\n  optimizers: [sgd, adamw]\n", "adamw"),
        ("training:\n  batch_sise: 64\n", "batch_sise"),
        ("training:\n  patience: three\n", "three"),
        ("search:\n  lr_range: {sgd: [0.5, 0.1], adam: [0.0001, 0.01]}\n", "search.lr_range.sgd: low (0.5)"),
        ("grid:\n  dropout: []\n", "grid.dropout is empty"),
        ("search:\n  n_trials: 1000000000\n", "search.n_trials: 1000000000 is greater than the maximum of 10000"),
        ("training:\n  hidden: [1000000000]\n", "training.hidden.0: 1000000000 is greater than the maximum"),
        ("grid:\n  seeds: [" + ", ".join(map(str, range(1001))) + "]\n", "grid.seeds"),
    ],
    ids=[
        "unknown-optimizer",
        "unknown-key",
        "wrong-type",
        "low-above-high",
        "empty-grid",
        "huge-n-trials",
        "huge-hidden",
        "too-many-seeds",
    ],  # fmt: skip
)
def test_snakemake_stops_before_any_job(tmp_path, text, expected):
    proc = run_dry(tmp_path, text)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_every_count_in_the_schema_has_a_maximum():
    """No integer setting may ask for an unbounded amount of work or memory (n_trials: 1e9 ran for ever)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    unbounded = []

    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "integer" and "maximum" not in node and not where.endswith(("seed", "split_seed")):
                unbounded.append(where)
            if node.get("type") == "array" and "maxItems" not in node and "default" in node:
                if isinstance(node.get("items"), dict) and node["items"].get("type") == "integer":
                    unbounded.append(where + "[]")
            for key, value in node.items():
                walk(value, f"{where}.{key}" if key not in ("properties", "items") else where)

    walk(schema, "")
    assert not unbounded, unbounded


def test_a_cell_depends_only_on_its_own_settings():
    """The replication arm takes the seed report's rates; a cell's training parameters hold only what it
    reads (Adam's beta2 only for Adam cells), so editing another cell's setting does not rerun it."""
    config = default_config()
    rep_sgd, rep_adam = Cell("sgd", False, 0.0, arm="replication"), Cell("adam", True, 0.5, arm="replication")
    assert fallback_lr(config, rep_sgd) == {"sgd": 0.02} and fallback_lr(config, rep_adam) == {"adam": 0.001}
    assert fallback_lr(config, Cell("sgd", False, 0.0)) == {"sgd": config["grid"]["fallback_lr"]["sgd"]}
    assert "adam_beta2" not in train_options(config, rep_sgd)
    assert train_options(config, rep_adam)["adam_beta2"] == 0.999


def test_the_cnn_has_its_own_schedule_and_the_mlp_keeps_the_training_sections():
    """cnn.schedule* apply to the CNN cells (their training and their search) and to nothing else; absent,
    the CNN takes the training section's schedule."""
    config = default_config()
    cnn, mlp = Cell("adam", False, 0.0, arch="cnn"), Cell("adam", False, 0.0)
    config["cnn"].update(schedule="exponential", schedule_gamma=0.8)
    for options in (train_options(config, cnn), train_options(config, cnn, for_search=True)):
        assert (options["schedule"], options["schedule_gamma"]) == ("exponential", 0.8)
        settings = TrainSettings.from_config(options)
        assert settings.lr_schedule()(0.002, 3) == pytest.approx(0.002 * 0.8**2)
    assert train_options(config, mlp)["schedule"] == "constant"
    del config["cnn"]["schedule"], config["cnn"]["schedule_gamma"]
    config["training"]["schedule"] = "step"
    assert train_options(config, cnn)["schedule"] == "step"


def test_the_default_config_is_found_beside_the_snakefile_from_any_folder(tmp_path):
    """`snakemake -s <project>/Snakefile --directory <other> --configfile config/quick.yaml` reads the default
    study first and lets quick.yaml override it (the CNN keeps its hidden layer), as in the project folder."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(REPO / "config" / "quick.yaml")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Config file {REPO / 'config' / 'config.yaml'} is extended" in proc.stdout + proc.stderr


def test_a_claim_on_cells_the_grid_lacks_is_named_and_left_out():
    """A narrower grid than the claims were declared for: each claim it cannot test is named, not refused."""
    config = copy.deepcopy(default_config())
    config["grid"]["dropout"] = [0.0, 0.3]
    check_config(config)
    lines = untestable_claims(config)
    assert any(line.startswith("protocol.claims: dp_acc is not tested: it names dropout 0.5") for line in lines)
    assert not any("adam_acc" in line for line in lines) and not untestable_claims(default_config())


@pytest.mark.parametrize("kind", ["long", "quotes"])
def test_a_folder_sqlite_or_mlflow_cannot_take_stops_the_plan(tmp_path, kind):
    """A study folder whose local store's path is over SQLite's 512 bytes, or whose path holds both kinds
    of quote, stops Snakemake before any job with the limit and the repair, not 100 s into MLflow's retries."""
    folder = tmp_path
    if kind == "long":
        for _ in range(3):
            folder = folder / ("d" * 200)
    else:
        folder = folder / 'o\'brien "quoted"'
    folder.mkdir(parents=True)
    proc = run_dry(folder, "study_name: folder-check\n")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    expected = "over SQLite's limit of 512" if kind == "long" else "holds both ' and \""
    assert "unusable study folder" in output and expected in output, output[-2000:]
    assert not (folder / "results").exists()
