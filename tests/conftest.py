"""Shared fixtures: the local MNIST mirror (when present) and small IDX files written by the tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "mnist"


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``compress``."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Crude but learnable 28x28 'digits': each class is a bar at its own position, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 2 + 2 * int(c) + rng.integers(0, 2)
        images[i, row : row + 3, 4:24] = 255
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
