"""MNIST download (mirror fallback, digests, atomic writes), IDX parsing and the seeded split."""

import gzip
import hashlib
import http.server
import logging
import select
import socket
import socketserver
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SHARED_MNIST, snakemake, write_idx, write_small_study

from nnstudy import mnist
from nnstudy.mnist import DownloadError, IdxError, fetch_file, fetch_mnist, mirror_list, prepare_dataset, read_idx


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


def dataset_files(folder: Path, n: int = 40, **replace: np.ndarray) -> dict[str, Path]:
    """Four IDX files of ``n`` 28x28 items with every class 0-9 in each split; ``replace`` swaps an array."""
    labels = (np.arange(n) % 10).astype(np.uint8)
    arrays = {"train_images": np.zeros((n, 28, 28), np.uint8), "train_labels": labels,
              "test_images": np.zeros((n, 28, 28), np.uint8), "test_labels": labels, **replace}  # fmt: skip
    return {key: write_idx(folder / name, arrays[key]) for key, name in mnist.FILES.items()}


@pytest.mark.parametrize(
    ("replace", "named", "fault"),
    [
        ({"test_images": np.zeros((40, 27, 28), np.uint8)}, "t10k-images", r"27x28 by the IDX header.*declares 28x28"),
        ({"train_images": np.zeros((40, 784), np.uint8)}, "train-images", r"expected a 3-D IDX array.*2-D"),
        ({"train_images": np.zeros((40, 1, 28, 28), np.uint8)}, "train-images", r"expected a 3-D IDX array.*4-D"),
        ({"test_labels": np.arange(39, dtype=np.uint8) % 10}, "t10k-labels", r"40 images but .* has 39 labels"),
        (
            {"train_labels": (np.arange(40) % 11).astype(np.uint8)},
            "train-labels",
            r"label 10 is outside the 10 declared",
        ),
        (
            {"test_labels": (np.arange(40) % 9).astype(np.uint8)},
            "t10k-labels",
            r"class 9 of the 10 declared classes has no item",
        ),
    ],
    ids=["wrong-shape", "not-2d-images", "4d-images", "count-mismatch", "label-out-of-range", "class-missing"],
)
def test_bad_datasets_are_refused_naming_file_and_fault(tmp_path, replace, named, fault):
    files = dataset_files(tmp_path, **replace)
    with pytest.raises(IdxError, match=fault) as info:
        mnist.prepare_dataset(files, tmp_path / "split.npz", train_size=20, val_size=10)
    assert named in str(info.value)
    assert not (tmp_path / "split.npz").exists()  # nothing half-made is left looking valid


def test_a_class_missing_from_the_validation_split_is_refused(tmp_path):
    """4 validation items cannot hold 10 classes: refused before any training, naming the split."""
    files = dataset_files(tmp_path)
    with pytest.raises(IdxError, match=r"the validation split of .*train-labels.*no item"):
        mnist.prepare_dataset(files, tmp_path / "split.npz", train_size=36, val_size=4)


def test_fewer_declared_classes_refuse_larger_labels(tmp_path):
    files = dataset_files(tmp_path)
    with pytest.raises(IdxError, match="label 9 is outside the 5 declared classes"):
        mnist.read_mnist_files(files, n_classes=5)


def test_digest_of_the_decompressed_content_is_accepted(tmp_path):
    """Debian recompresses Fashion-MNIST's .gz files: a digest of the IDX content holds for either copy."""
    raw = b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    content_digest = hashlib.sha256(raw).hexdigest()
    assert mnist.digest_matches(gzip.compress(raw, mtime=0), content_digest)
    assert mnist.digest_matches(gzip.compress(raw, compresslevel=1, mtime=5), content_digest)
    assert not mnist.digest_matches(gzip.compress(raw + b"\x00"), content_digest)
    assert mnist.mirror_env("fashion-mnist") == "NNSTUDY_FASHION_MNIST_MIRRORS"
    assert mnist.mirror_env() == mnist.MIRROR_ENV


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


# ----------------------------------------------------------------------------- slow and silent mirrors


@contextmanager
def dribbling_server(slow_headers: bool = False, seconds_per_byte: float = 2.0):
    """A real HTTP server on 127.0.0.1 that sends a 100 kB file one byte every ``seconds_per_byte``
    (its headers too when ``slow_headers``). Yields (base URL, event set when a client hangs up early)."""
    abandoned, stop = threading.Event(), threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            connection = self.request
            connection.recv(65536)  # the request
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
            payload = head + bytes(100_000)
            sent = 0 if slow_headers else len(head)
            try:
                connection.sendall(payload[:sent])
                while sent < len(payload) and not stop.is_set():
                    readable, _, _ = select.select([connection], [], [], seconds_per_byte)
                    if readable and not connection.recv(1):  # the client closed the connection
                        abandoned.set()
                        return
                    connection.sendall(payload[sent : sent + 1])
                    sent += 1
            except OSError:  # reset by the client
                abandoned.set()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", abandoned
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


class SilentServer:
    """A real server on 127.0.0.1 that accepts connections and never answers; counts the connections."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/"
        self.accepted: list[tuple[socket.socket, tuple]] = []  # (connection, the client's address)
        self.changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                accepted = self.socket.accept()
            except OSError:  # closed
                return
            with self.changed:
                self.accepted.append(accepted)
                self.changed.notify_all()

    def connections(self) -> int:
        """Connections made so far: a probe connection is accepted after every earlier one."""
        with socket.create_connection(self.socket.getsockname()) as probe:
            name = probe.getsockname()
            with self.changed:
                assert self.changed.wait_for(lambda: any(address == name for _, address in self.accepted), 60)
                return [address for _, address in self.accepted].index(name)

    def close(self):
        self.socket.close()
        for connection, _ in self.accepted:
            connection.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def test_a_dribbling_mirror_is_given_up_and_the_next_one_used(tmp_path, caplog):
    """Issue 12, item 2: 1 byte every 2 s with timeout_s 5 is abandoned (within 60 s) for the next mirror."""
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    good, digest = make_file(good_dir)
    with dribbling_server() as (slow, abandoned), caplog.at_level(logging.WARNING, logger="nnstudy.mnist"):
        start = time.monotonic()
        got = fetch_file("data.gz", [slow, str(good_dir)], tmp_path / "dest", digest, timeout=5)
        elapsed = time.monotonic() - start
        assert abandoned.wait(60), "the client kept the dribbling connection open"
    assert got.read_bytes() == good.read_bytes()
    assert elapsed < 60  # the bound; about 6 s (one 5 s rate window) when the machine is idle
    (record,) = caplog.records
    assert slow in record.getMessage() and "too slow" in record.getMessage()
    assert "min_bytes_per_s" in record.getMessage()


@pytest.mark.parametrize("slow_headers", [False, True], ids=["slow-body", "slow-headers"])
def test_each_file_has_a_total_deadline(tmp_path, slow_headers):
    """No rate minimum and a socket timeout longer than the gaps: only the deadline can end it."""
    with dribbling_server(slow_headers, seconds_per_byte=0.5) as (slow, abandoned):
        with pytest.raises(DownloadError) as info:
            fetch_file("data.gz", [slow], tmp_path / "dest", "0" * 64, timeout=30, deadline=2, min_bytes_per_s=0)
        assert abandoned.wait(60)
    message = str(info.value)
    assert slow in message and "deadline of 2 s per file (file_deadline_s)" in message
    if slow_headers:  # the status line alone takes longer than the deadline
        assert "before the response headers" in message
    assert not (tmp_path / "dest").exists() or not list((tmp_path / "dest").iterdir())


def test_a_stalled_transfer_is_given_up_after_timeout_s(tmp_path):
    """The headers come at once, then nothing: given up after timeout_s (5 s leaves a busy machine time
    to send the headers, which must come within timeout_s)."""
    with dribbling_server(seconds_per_byte=3600) as (slow, abandoned):
        with pytest.raises(DownloadError, match=r"stalled: no data for 5 s \(timeout_s\) after 0 bytes") as info:
            fetch_file("data.gz", [slow], tmp_path / "dest", "0" * 64, timeout=5, min_bytes_per_s=0)
        assert abandoned.wait(60)
    assert slow in str(info.value)


def test_a_silent_mirror_costs_one_try_for_all_four_files(tmp_path, tiny_mnist_dir, silent_server, caplog):
    """Issue 12, item 2: a server that accepts and never answers is probed once, not once per file."""
    digests = {n: hashlib.sha256((tiny_mnist_dir / n).read_bytes()).hexdigest() for n in mnist.FILES.values()}
    with caplog.at_level(logging.WARNING, logger="nnstudy.mnist"):
        files = fetch_mnist([silent_server.url, str(tiny_mnist_dir)], tmp_path / "dest", timeout=1, digests=digests)
    assert sorted(p.name for p in files.values()) == sorted(mnist.FILES.values())
    assert silent_server.connections() == 1
    (record,) = caplog.records
    assert silent_server.url in record.getMessage() and "no answer within 1 s" in record.getMessage()


def test_a_dead_mirror_is_named_as_skipped_for_the_next_files(tmp_path, silent_server):
    unusable: dict[str, str] = {}
    refused = "http://127.0.0.1:9/"
    with pytest.raises(DownloadError) as first:
        fetch_file("a.gz", [silent_server.url, refused], tmp_path, "0" * 64, timeout=1, unusable=unusable)
    assert f"{silent_server.url}: unreachable: no answer within 1 s (timeout_s)" in str(first.value)
    assert f"{refused}: unreachable:" in str(first.value)
    with pytest.raises(DownloadError) as second:
        fetch_file("b.gz", [silent_server.url, refused], tmp_path, "0" * 64, timeout=1, unusable=unusable)
    assert f"{silent_server.url}: skipped, it failed for a.gz: unreachable: no answer" in str(second.value)
    assert f"{refused}: skipped, it failed for a.gz" in str(second.value)
    assert silent_server.connections() == 1


def test_a_good_http_mirror_passes_the_rate_and_deadline_checks(tmp_path, http_mirror):
    base, served = http_mirror
    good, digest = make_file(served)
    assert fetch_file("data.gz", [base], tmp_path / "dest", digest).read_bytes() == good.read_bytes()


def test_snakemake_download_applies_the_config_limits(tmp_path):
    """The rule passes timeout_s, file_deadline_s and min_bytes_per_s through: with no rate minimum the
    3 s deadline ends the dribbling mirror, and the small study's own mirror gives the files."""
    config = write_small_study(tmp_path)
    with dribbling_server(seconds_per_byte=0.5) as (slow, abandoned):
        config["data"].update(mirrors=[slow, *config["data"]["mirrors"]], timeout_s=5, file_deadline_s=3,
                              min_bytes_per_s=0)  # fmt: skip
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        proc = snakemake(tmp_path, "--cores", "1", "results/data/raw/train-images-idx3-ubyte.gz")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert abandoned.wait(60)
    for name in mnist.FILES.values():
        assert (
            hashlib.sha256((tmp_path / "results/data/raw" / name).read_bytes()).hexdigest()
            == (config["data"]["sha256"][name])
        )
    log = (tmp_path / "results/logs/download_data.log").read_text()
    assert f"train-images-idx3-ubyte.gz from {slow}: gave up at the deadline of 3 s per file" in log
    assert log.count(slow) == 2  # in the list of mirrors, then once for the first file; skipped for the others


def test_download_limits_in_the_schema():
    from snakemake.utils import validate

    schema = str(Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml")
    config = {"data": {}}
    validate(config, schema)
    assert config["data"]["file_deadline_s"] == mnist.DEFAULT_DEADLINE_S
    assert config["data"]["min_bytes_per_s"] == mnist.DEFAULT_MIN_BYTES_PER_S
    assert config["data"]["timeout_s"] == mnist.DEFAULT_TIMEOUT_S
    for key, value in (("file_deadline_s", 0), ("file_deadline_s", 10**6), ("min_bytes_per_s", -1)):
        with pytest.raises(Exception, match=key):
            validate({"data": {key: value}}, schema)
