"""Shared fixtures: the local MNIST mirror (when present) and small IDX files written by the tests."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import servers
import yaml

from nnstudy.gui.screenshot import CHROMIUM_ARGS, chromium

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "mnist"
MIRROR_ENV = "NNSTUDY_MNIST_MIRRORS"


#: tests that share an expensive fixture run in one pytest-xdist worker (``--dist loadgroup``), so that it is
#: built once; the longest groups are handed out first
GROUPS = (("slurm", lambda item: item.module.__name__ == "test_slurm"),
          ("study", lambda item: "study" in item.fixturenames),
          ("shapes", lambda item: "shapes_study" in item.fixturenames),
          ("gui-models", lambda item: "trained_results" in item.fixturenames))  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    def group(item) -> int:
        for rank, (name, belongs) in enumerate(GROUPS):
            if belongs(item):
                item.add_marker(pytest.mark.xdist_group(name))
                return rank
        return len(GROUPS)

    items.sort(key=group)  # stable: each group keeps its collection order


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``compress``."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable but not trivial 28x28 'digits': each class is a bar at its own height, jittered so that
    neighbouring classes overlap, on a noisy background."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 90, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 3 + 2 * int(c) + rng.integers(-1, 2)
        start = rng.integers(0, 10)
        images[i, row : row + 2, start : start + 14] = rng.integers(120, 256)
    return images, labels


@pytest.fixture
def tiny_mnist_dir(tmp_path) -> Path:
    """A folder with the four MNIST file names holding small synthetic IDX data."""
    folder = tmp_path / "tiny_mnist"
    folder.mkdir()
    tr_x, tr_y = synthetic_digits(600, 0)
    te_x, te_y = synthetic_digits(200, 1)
    write_idx(folder / "train-images-idx3-ubyte.gz", tr_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", tr_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", te_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", te_y)
    return folder


def require_shared_mnist() -> Path:
    """The shared real-MNIST folder, or a skip that says why."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST} (the shared folder beside the repository)")
    return SHARED_MNIST


FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", MIRROR_ENV)}
    env["PYTHONHASHSEED"] = "0"
    return env


def run_bounded(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; past ``timeout`` the whole group is killed (a stuck Snakemake
    ignores SIGTERM while its jobs run, and its jobs would outlive it) and TimeoutExpired is raised."""
    import signal

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kwargs) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


#: the workflow's own files: what a project folder holds besides its results
WORKFLOW_FILES = ("Snakefile", "workflow", "profiles", "report/templates", "environment.yml", "config")


def copy_workflow(dest: Path) -> None:
    """Make ``dest`` a project folder as a user's clone is: the workflow's files, with the study run inside."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Real Snakemake on the test study, with the folder's own Snakefile when it is a project folder (see
    ``copy_workflow``), else the repository's; the timeout is only a safety net against a hang (the tests
    wait for Snakemake to finish, however loaded the machine is)."""
    snakefile = workdir / "Snakefile" if (workdir / "Snakefile").exists() else REPO / "Snakefile"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]  # fmt: skip
    return run_bounded(cmd, timeout, env=clean_env())


def write_small_study(workdir: Path) -> dict:
    """The test configuration, with a mirror of synthetic IDX files and their digests."""
    mirror = workdir / "mirror"
    mirror.mkdir(parents=True)
    train_x, train_y = synthetic_digits(3200, 0)
    test_x, test_y = synthetic_digits(600, 1)
    arrays = {"train_images": train_x, "train_labels": train_y, "test_images": test_x, "test_labels": test_y}
    digests = {}
    for key, name in FILES.items():
        digests[name] = hashlib.sha256(write_idx(mirror / name, arrays[key]).read_bytes()).hexdigest()
    config = yaml.safe_load((REPO / "tests" / "data" / "small_config.yaml").read_text())
    config["data"]["mirrors"] = [str(workdir / "no-such-mirror"), str(mirror)]
    config["data"]["sha256"] = digests
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


#: a claim a user declares in their own config (see test_report.py and test_pipeline.py)
USER_CLAIM = {"id": "user_bn_val", "family": "extension", "metric": "best_val_acc", "direction": "increase",
              "a": {"optimizer": "sgd"}, "b": {"optimizer": "sgd", "batchnorm": True},
              "statement": {"en": "BN raises the validation accuracy of SGD (a user's claim)",
                            "zh": "BN 提高 SGD 的验证准确率（用户声明的论断）"}}  # fmt: skip


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """The whole test study, run once with real Snakemake (--cores 8 on this machine's cores) inside a
    project folder (a copy of the workflow's files, as a user's clone is)."""
    workdir = tmp_path_factory.mktemp("study")
    copy_workflow(workdir)
    config = write_small_study(workdir)
    # the one study whose report is rendered in both languages and shows the recogniser's page
    config["report"].update(languages=["en", "zh"], gui_screenshot=True)
    # a user's own claim beside the default config's: declared as data, tested and reported with no code change
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["protocol"]["claims"]
    config["protocol"]["claims"] = [*default, USER_CLAIM]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "--cores", "8")
    assert proc.returncode == 0, proc.stderr[-4000:]
    (workdir / "console.txt").write_text(proc.stdout + proc.stderr)  # what the user saw
    return workdir, config


def chromium_path() -> str:
    """Debian's Chromium (the README's set-up installs it), found as the report's screenshot finds it."""
    try:
        return chromium()
    except RuntimeError as exc:
        pytest.fail(str(exc))


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL cluster on 127.0.0.1, run as the postgres user (what Optuna's RDB storage needs)."""
    if servers.postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (the README's test command installs it)")
    with servers.postgres() as url:
        yield url


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 with its own store and artifact root."""
    with servers.mlflow_server(tmp_path, env=clean_env()) as url:
        yield url
