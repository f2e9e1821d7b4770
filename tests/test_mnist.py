"""MNIST download (mirror fallback, digests, atomic writes), IDX parsing and the seeded split."""

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_MNIST, write_idx

from nnstudy import mnist
from nnstudy.mnist import DownloadError, IdxError, fetch_file, mirror_list, prepare_dataset, read_idx


@pytest.fixture
def http_mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder; yields (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    server.server_close()


def make_file(folder: Path, name: str = "data.gz", seed: int = 0) -> tuple[Path, str]:
    rng = np.random.default_rng(seed)
    path = write_idx(folder / name, rng.integers(0, 255, (5, 28, 28)).astype(np.uint8))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", array, compress=False)), array)


@pytest.mark.parametrize(
    "raw,fault",
    [
        (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02", "truncated body"),
        (b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x01\x02", "trailing bytes"),
        (b"\x12\x34\x08\x01" + (1).to_bytes(4, "big") + b"\x01", "bad IDX magic number"),
        (b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x01", "bad IDX magic number"),
        (b"\x00\x00\x08\x03" + (1).to_bytes(4, "big"), "truncated IDX header"),
        (b"\x00\x00", "too short"),
    ],
)
def test_bad_idx_files_name_file_and_fault(tmp_path, raw, fault):
    path = tmp_path / "broken-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(IdxError, match=fault) as info:
        read_idx(path)
    assert "broken-idx1-ubyte.gz" in str(info.value)


def test_bad_gzip(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + bytes(100))[:30])
    with pytest.raises(IdxError, match="labels.gz: not a valid gzip file"):
        read_idx(path)


def test_wrong_dimensions_are_rejected(tmp_path):
    files = {}
    for key, name in mnist.FILES.items():
        shape = (10, 28, 28) if "images" in key else (10,)
        files[key] = write_idx(tmp_path / name, np.zeros(shape, np.uint8))
    files["test_images"] = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 27, 28), np.uint8))
    with pytest.raises(IdxError, match=r"t10k-images.*shape \(N, 28, 28\)"):
        mnist.read_mnist_files(files)


def test_fetch_from_folder_and_file_url(tmp_path):
    (tmp_path / "src").mkdir()
    src, digest = make_file(tmp_path / "src")
    dest = tmp_path / "dest"
    assert fetch_file("data.gz", [str(src.parent)], dest, digest).read_bytes() == src.read_bytes()
    (dest / "data.gz").unlink()
    assert fetch_file("data.gz", [src.parent.as_uri()], dest, digest).exists()


def test_mirror_fallback_over_every_fault(tmp_path, http_mirror):
    base, served = http_mirror
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    good, digest = make_file(good_dir)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "data.gz").write_bytes(good.read_bytes()[:100])
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    make_file(wrong, seed=9)
    (served / "data.gz").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    mirrors = [str(tmp_path / "absent"), "http://127.0.0.1:9/", str(truncated), str(wrong), base, str(good_dir)]
    dest = tmp_path / "dest"
    assert fetch_file("data.gz", mirrors, dest, digest, timeout=5).read_bytes() == good.read_bytes()

    with pytest.raises(DownloadError) as info:
        fetch_file("data.gz", mirrors[:-1], tmp_path / "dest2", digest, timeout=5)
    message = str(info.value)
    for mirror in mirrors[:-1]:
        assert mirror in message
    assert "SHA-256 mismatch" in message and "HTML" in message
    leftovers = list((tmp_path / "dest2").iterdir()) if (tmp_path / "dest2").exists() else []
    assert leftovers == []  # no partial or unverified file


def test_existing_verified_file_is_kept_and_a_bad_one_replaced(tmp_path):
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    good, digest = make_file(good_dir)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "data.gz").write_bytes(b"half a file")
    fetch_file("data.gz", [str(good_dir)], dest, digest)
    assert (dest / "data.gz").read_bytes() == good.read_bytes()


def test_mirror_list_env_first_without_repeats():
    env = {mnist.MIRROR_ENV: "/a/b, /c https://x/"}
    assert mirror_list(["https://x/", "https://y/"], env) == ["/a/b", "/c", "https://x/", "https://y/"]
    assert mirror_list(["https://y/"], {}) == ["https://y/"]


def test_prepare_dataset_split(tmp_path, tiny_mnist_dir):
    files = {k: tiny_mnist_dir / n for k, n in mnist.FILES.items()}
    summary = prepare_dataset(files, tmp_path / "split.npz", train_size=400, val_size=150, test_size=100, seed=3)
    data = mnist.load_dataset(tmp_path / "split.npz")
    assert data["x_train"].shape == (400, 28, 28) and data["x_val"].shape == (150, 28, 28)
    assert data["x_test"].shape == (100, 28, 28) and data["x_train"].dtype == np.float32
    assert 0.0 <= data["x_train"].min() and data["x_train"].max() <= 1.0
    assert data["digest"] == summary["digest"]
    again = prepare_dataset(files, tmp_path / "again.npz", train_size=400, val_size=150, test_size=100, seed=3)
    assert again["digest"] == summary["digest"]
    other = prepare_dataset(files, tmp_path / "other.npz", train_size=400, val_size=150, test_size=100, seed=4)
    assert other["digest"] != summary["digest"]
    with pytest.raises(ValueError, match="at most 600"):
        prepare_dataset(files, tmp_path / "x.npz", train_size=500, val_size=150)


def test_shared_mnist_digests_match_the_known_ones():
    if not (SHARED_MNIST / "SHA256SUMS").exists():
        pytest.skip(f"no shared MNIST at {SHARED_MNIST}")
    for line in (SHARED_MNIST / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert mnist.SHA256[name] == digest
