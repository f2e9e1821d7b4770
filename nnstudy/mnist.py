"""Datasets in MNIST's format (MNIST, Fashion-MNIST, your own IDX files): download from a list of mirrors
with SHA-256 checks, IDX parsing with the dataset's declared shape and classes, and the seeded split."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_savez, atomic_write_bytes, read_regular_bytes

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
#: extra mirrors (folders or URLs, separated by commas or spaces), tried before the config's list; for a
#: dataset other than MNIST the variable is named after it (mirror_env: NNSTUDY_FASHION_MNIST_MIRRORS)
MIRROR_ENV = "NNSTUDY_MNIST_MIRRORS"
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
#: the schema's defaults: socket timeout, total time per file and mirror, and the slowest transfer accepted
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_DEADLINE_S = 600.0
DEFAULT_MIN_BYTES_PER_S = 20_000.0
READ_CHUNK = 64 * 1024

log = logging.getLogger(__name__)

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DownloadError(RuntimeError):
    """Every mirror failed for a file; the message lists each mirror and why."""


class IdxError(ValueError):
    """An IDX file that is not what it claims to be; the message names the file and the fault."""


# ----------------------------------------------------------------------------- download


def mirror_env(dataset: str = "mnist") -> str:
    """The environment variable whose mirrors are tried first for ``dataset`` (data.name)."""
    return "NNSTUDY_" + dataset.upper().replace("-", "_").replace(".", "_") + "_MIRRORS"


def mirror_list(configured: Sequence[str], environ: dict[str, str] | None = None, dataset: str = "mnist") -> list[str]:
    """Mirrors from the dataset's environment variable first, then the configured ones, without repeats."""
    env_value = (environ if environ is not None else os.environ).get(mirror_env(dataset), "")
    from_env = env_value.replace(",", " ").split()
    seen: list[str] = []
    for m in [*from_env, *configured]:
        if m not in seen:
            seen.append(m)
    return seen


def _mirror_url(mirror: str, filename: str) -> str:
    """A URL for ``filename`` on a mirror given as http(s)://, file:// or a plain folder."""
    scheme = urllib.parse.urlparse(mirror).scheme
    if scheme in ("http", "https", "file"):
        return mirror.rstrip("/") + "/" + filename
    if scheme and len(scheme) > 1:
        raise ValueError(f"unsupported mirror scheme {scheme!r} (use http, https, file or a folder)")
    return Path(mirror).expanduser().resolve().joinpath(filename).as_uri()


class _MirrorUnusable(Exception):
    """A mirror that did not answer, stalled, was too slow or ran out of time: the remaining files skip it."""


class _Deadline:
    """Shuts the sockets of one download when its deadline passes, so that no read blocks beyond it.

    A socket timeout bounds each read but not their sum: a server that sends a byte now and then
    (even while sending its headers) would keep the download alive for ever.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read; the owner still closes the socket
        except OSError:
            pass  # already closed


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies, redirects, HTTPS) whose HTTP connections report their sockets to ``deadline``."""

    class Watched:
        def do_open(self, http_class, req, **kwargs):
            class Connection(http_class):
                def connect(self):
                    super().connect()
                    deadline.watch(self.sock)

            return super().do_open(Connection, req, **kwargs)

    class HTTPHandler(Watched, urllib.request.HTTPHandler):
        pass

    class HTTPSHandler(Watched, urllib.request.HTTPSHandler):
        pass

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def _read_url(url: str, timeout: float, deadline_s: float, min_bytes_per_s: float) -> bytes:
    """The body at ``url``.

    ``timeout`` bounds connecting and each read; ``deadline_s`` bounds the whole file; and the transfer is
    given up when fewer than ``min_bytes_per_s`` arrive on average over any ``timeout`` seconds. These
    failures, and a server that cannot be reached or does not answer, raise ``_MirrorUnusable``.
    """
    parsed = urllib.parse.urlparse(url)
    remote = parsed.scheme in ("http", "https")
    if parsed.scheme == "file":  # a FIFO or device would block past any deadline: refused, never opened
        local = Path(urllib.request.url2pathname(parsed.path))
        if local.exists() and not local.is_file():
            raise ValueError(f"{local} is not a regular file (a FIFO, device or folder); a local mirror must "
                             "hold the dataset's files themselves")  # fmt: skip
    with _Deadline(deadline_s) as deadline:
        late = f"gave up at the deadline of {deadline_s:g} s per file (file_deadline_s)"
        try:
            response = _opener(deadline).open(url, timeout=timeout)
        except urllib.error.HTTPError:
            raise  # the server answered (404, 500, ...): a fault of this file only
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            if deadline.expired:
                raise _MirrorUnusable(late + " before the response headers") from None
            if remote:
                reason = getattr(exc, "reason", None) or exc
                if isinstance(reason, TimeoutError):
                    reason = f"no answer within {timeout:g} s (timeout_s)"
                raise _MirrorUnusable(f"unreachable: {reason}") from None
            raise
        with response:
            return _read_body(response, deadline, late, timeout, min_bytes_per_s)


def _read_body(response, deadline: _Deadline, late: str, timeout: float, min_bytes_per_s: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            chunk = response.read1(READ_CHUNK)  # returns what one read of the socket gave
        except (OSError, http.client.HTTPException) as exc:
            if deadline.expired:
                raise _MirrorUnusable(f"{late} ({total} bytes received)") from None
            if isinstance(exc, TimeoutError):
                raise _MirrorUnusable(f"stalled: no data for {timeout:g} s (timeout_s) after {total} bytes") from None
            raise
        if deadline.expired:  # the shut socket may read as the end of the file
            raise _MirrorUnusable(f"{late} ({total} bytes received)")
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_DOWNLOAD_BYTES:
            raise ValueError(f"larger than {MAX_DOWNLOAD_BYTES} bytes")
        chunks.append(chunk)
        now = time.monotonic()
        if now - window_start >= timeout:
            if total - window_bytes < min_bytes_per_s * (now - window_start):
                raise _MirrorUnusable(
                    f"too slow: {total - window_bytes} bytes in {now - window_start:.1f} s, under the minimum of "
                    f"{min_bytes_per_s:g} bytes/s (min_bytes_per_s)"
                )
            window_start, window_bytes = now, total


def _why_bad(data: bytes, expected_sha256: str) -> str | None:
    """None for good bytes, else a short reason."""
    if not data:
        return "empty response"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<html" in head:
        return "got an HTML/XML page instead of the file"
    if not digest_matches(data, expected_sha256):
        digest = hashlib.sha256(data).hexdigest()
        return f"SHA-256 mismatch ({len(data)} bytes, sha256 {digest[:16]}..., expected {expected_sha256[:16]}...)"
    return None


def digest_matches(data: bytes, expected_sha256: str) -> bool:
    """The file's SHA-256, or that of its decompressed content, is the expected one: a digest of the IDX
    content holds for every mirror however it compressed the file (Debian recompresses Fashion-MNIST's)."""
    if hashlib.sha256(data).hexdigest() == expected_sha256:
        return True
    if data[:2] != b"\x1f\x8b":
        return False
    try:
        content = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return False
    return hashlib.sha256(content).hexdigest() == expected_sha256


def fetch_file(
    filename: str,
    mirrors: Iterable[str],
    dest_dir: str | Path,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    deadline: float = DEFAULT_DEADLINE_S,
    min_bytes_per_s: float = DEFAULT_MIN_BYTES_PER_S,
    unusable: dict[str, str] | None = None,
) -> Path:
    """Put a verified copy of ``filename`` in ``dest_dir``, trying each mirror in turn.

    A file already there with the right digest is kept.  The download is written
    to a temporary file and renamed only after its digest matched.  Each mirror gets at
    most ``deadline`` seconds and must send ``min_bytes_per_s`` on average over every
    ``timeout`` seconds.  A mirror that could not be reached, did not answer or was given up
    as too slow is recorded in ``unusable`` (mirror -> reason), and mirrors recorded there
    are skipped: pass one dict for several files so that a dead mirror costs one try.
    """
    expected = sha256 or SHA256[filename]
    dest = Path(dest_dir) / filename
    if dest.exists() and digest_matches(read_regular_bytes(dest), expected):
        return dest
    unusable = {} if unusable is None else unusable
    failures = []
    for mirror in mirrors:
        if mirror in unusable:
            failures.append(f"  {mirror}: skipped, {unusable[mirror]}")
            continue
        try:
            data = _read_url(_mirror_url(mirror, filename), timeout, deadline, min_bytes_per_s)
            reason = _why_bad(data, expected)
        except _MirrorUnusable as exc:
            reason = str(exc)
            unusable[mirror] = f"it failed for {filename}: {exc}"
        except (OSError, ValueError) as exc:  # urllib's URLError and HTTPError are OSErrors
            reason = str(getattr(exc, "reason", None) or exc)
        if reason is None:
            atomic_write_bytes(dest, data)
            return dest
        failures.append(f"  {mirror}: {reason}")
        log.warning("%s from %s: %s; trying the next mirror", filename, mirror, reason)
    if not failures:
        raise DownloadError(f"no mirrors configured for {filename}")
    raise DownloadError(f"could not get a verified {filename} from any mirror:\n" + "\n".join(failures))


def fetch_mnist(
    mirrors: Sequence[str],
    dest_dir: str | Path,
    timeout: float = DEFAULT_TIMEOUT_S,
    digests: dict[str, str] | None = None,
    deadline: float = DEFAULT_DEADLINE_S,
    min_bytes_per_s: float = DEFAULT_MIN_BYTES_PER_S,
) -> dict[str, Path]:
    """All four MNIST files, verified against ``digests`` (file name -> SHA-256; the public
    MNIST digests by default); keys as in FILES.  A mirror that fails to answer, or is given
    up as too slow, for one file is not tried for the others."""
    digests = {**SHA256, **(digests or {})}
    unusable: dict[str, str] = {}
    return {
        key: fetch_file(name, mirrors, dest_dir, digests[name], timeout, deadline, min_bytes_per_s, unusable)
        for key, name in FILES.items()
    }


# ----------------------------------------------------------------------------- IDX


def read_idx(path: str | Path) -> np.ndarray:
    """Parse a gzipped (``.gz``) or plain IDX file, checking magic number, dimensions and size."""
    path = Path(path)
    try:
        raw = read_regular_bytes(path)  # a FIFO or a device is refused, never read (it could block for ever)
    except OSError as exc:
        raise IdxError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxError(f"{path}: not a valid gzip file ({exc})") from None
    if len(raw) < 4:
        raise IdxError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in IDX_TYPES:
        raise IdxError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000 then a type code "
            f"in {[hex(c) for c in IDX_TYPES]})"
        )
    if ndim == 0:
        raise IdxError(f"{path}: IDX header declares zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        fault = "truncated body" if body < expected else "trailing bytes after the body"
        raise IdxError(f"{path}: {fault}: dimensions {dims} need {expected} bytes, found {body}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_mnist_files(
    files: dict[str, Path | str], n_classes: int = 10, image_shape: Sequence[int] = (28, 28)
) -> dict[str, np.ndarray]:
    """Read the four files and check that they make a dataset of ``n_classes`` classes of uint8 images of
    ``image_shape`` (data.classes and data.image_shape): each fault is named with its file and repair."""
    arrays = {key: read_idx(files[key]) for key in FILES}
    shape = tuple(int(n) for n in image_shape)
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        image_file, label_file = files[f"{part}_images"], files[f"{part}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IdxError(
                f"{image_file}: expected a 3-D IDX array of uint8 images (N, height, width), got "
                f"{images.ndim}-D {images.dtype} {images.shape}; give grey images, one 2-D image per item"
            )
        if images.shape[1:] != shape:
            raise IdxError(
                f"{image_file}: images are {images.shape[1]}x{images.shape[2]} by the IDX header, but "
                f"data.image_shape declares {shape[0]}x{shape[1]}; resize the images or fix data.image_shape"
            )
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise IdxError(f"{label_file}: expected a 1-D uint8 label vector, got {labels.ndim}-D {labels.shape}")
        if len(images) != len(labels):
            raise IdxError(
                f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels; "
                "the two files of a split must hold the same number of items"
            )
        check_labels(labels, n_classes, str(label_file))
    return arrays


def check_labels(labels: np.ndarray, n_classes: int, where: str) -> None:
    """Every label names a declared class and every declared class has at least one item."""
    if labels.size and int(labels.max()) >= n_classes:
        raise IdxError(
            f"{where}: label {int(labels.max())} is outside the {n_classes} declared classes (0-{n_classes - 1}); "
            "declare every class in data.classes or fix the labels"
        )
    missing = sorted(set(range(n_classes)) - set(np.unique(labels).tolist()))
    if missing:
        raise IdxError(
            f"{where}: class{'es' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of the "
            f"{n_classes} declared classes {'have' if len(missing) > 1 else 'has'} no item; every class "
            "must appear in every split (use more data, or declare only the classes present in data.classes)"
        )


# ----------------------------------------------------------------------------- split


def file_digest(paths: Iterable[Path | str]) -> str:
    """One SHA-256 over the given files' digests, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()


def prepare_dataset(
    files: dict[str, Path | str],
    out_path: str | Path,
    *,
    train_size: int = 50_000,
    val_size: int = 10_000,
    test_size: int | None = None,
    seed: int = 0,
    n_classes: int = 10,
    image_shape: Sequence[int] = (28, 28),
) -> dict[str, object]:
    """Write the seeded train/validation split and the test set as a ``.npz`` of uint8 images.

    ``train_size + val_size`` images are drawn without replacement from the
    60,000 training images; the test images stay apart (the first ``test_size``).
    Returns a summary with the dataset digest.
    """
    arrays = read_mnist_files(files, n_classes, image_shape)
    n = len(arrays["train_images"])
    if train_size < 1 or val_size < 1 or train_size + val_size > n:
        raise ValueError(f"train_size ({train_size}) + val_size ({val_size}) must be positive and at most {n}")
    n_test = len(arrays["test_images"]) if test_size is None else test_size
    if not 1 <= n_test <= len(arrays["test_images"]):
        raise ValueError(f"test_size must lie in [1, {len(arrays['test_images'])}], got {test_size}")
    order = np.random.default_rng(seed).permutation(n)
    train_idx, val_idx = np.sort(order[:train_size]), np.sort(order[train_size : train_size + val_size])
    check_labels(arrays["train_labels"][train_idx], n_classes, f"the training split of {files['train_labels']}")
    check_labels(arrays["train_labels"][val_idx], n_classes, f"the validation split of {files['train_labels']}")
    check_labels(arrays["test_labels"][:n_test], n_classes, f"the first {n_test} test items of {files['test_labels']}")
    source = file_digest(files[k] for k in FILES)
    digest = hashlib.sha256(f"{source}:{train_size}:{val_size}:{n_test}:{seed}".encode()).hexdigest()
    out = {
        "x_train": arrays["train_images"][train_idx],
        "y_train": arrays["train_labels"][train_idx],
        "x_val": arrays["train_images"][val_idx],
        "y_val": arrays["train_labels"][val_idx],
        "x_test": arrays["test_images"][:n_test],
        "y_test": arrays["test_labels"][:n_test],
        "digest": np.array(digest),
        "source_digest": np.array(source),
    }
    atomic_savez(out_path, out)
    return {
        "digest": digest,
        "source_digest": source,
        "train": train_size,
        "val": val_size,
        "test": n_test,
        "seed": seed,
    }


def resplit(data: dict[str, Any], seed: int, base_seed: int = 0) -> dict[str, Any]:
    """The same training and validation images, split anew for one seed (the same split for that seed in
    every cell, so pairs stay paired): the seed-to-seed spread then includes the sampling of the split.
    The test set is untouched."""
    x = np.concatenate([data["x_train"], data["x_val"]])
    y = np.concatenate([data["y_train"], data["y_val"]])
    order = np.random.default_rng([base_seed, seed]).permutation(len(x))
    n_train = len(data["x_train"])
    train, val = np.sort(order[:n_train]), np.sort(order[n_train:])
    return {**data, "x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val]}


def load_dataset(path: str | Path, dtype: str = "float32") -> dict[str, np.ndarray | str]:
    """Read a prepared split; images scaled to [0, 1] in ``dtype``, labels as int64."""
    with np.load(path, allow_pickle=False) as data:
        out: dict[str, np.ndarray | str] = {"digest": str(data["digest"])}
        for part in ("train", "val", "test"):
            out[f"x_{part}"] = data[f"x_{part}"].astype(dtype) / np.asarray(255, dtype=dtype)
            out[f"y_{part}"] = data[f"y_{part}"].astype(np.int64)
    return out
