"""Configuration checks: schema and semantic errors name the key and stop the workflow before any job."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from nnstudy.config import Cell, ConfigError, check_config, grid_cells, study_cell, study_names

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
    names = [c.name for c in grid_cells(config)]
    assert len(names) == 9 and "adam-bn1-dp0.5" in names and names[-1] == "cnn-adam-bn0-dp0"
    assert study_names(config) == ["lr-adam", "lr-cnn-adam", "lr-sgd"]
    assert study_cell(config, "lr-cnn-adam") == Cell("adam", False, 0.0, "cnn")
    assert Cell.parse("cnn-adam-bn0-dp0").arch == "cnn" and Cell.parse("cnn-adam-bn0-dp0").variant == "CNN"
    config["search"]["per_cell"] = True
    assert len(study_names(config)) == 9
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
        (("data", "train_size"), 55000, "exceeds MNIST's 60000"),
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
