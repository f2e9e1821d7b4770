"""Atomic file writes (a temporary file in the target folder, then a rename) and reads that refuse what is
not a regular file (a FIFO would block the reader for ever; a device or folder is not an output)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np


def current_umask() -> int:
    """The process umask (mkstemp creates files 0600; finished files get the usual permissions)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class NotRegularFileError(OSError):
    """A path that exists but is a FIFO, a device, a socket or a folder where a regular file belongs."""


FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
              (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
              (stat.S_ISSOCK, "a socket"))  # fmt: skip


def not_regular(path: str, mode: int, action: str) -> NotRegularFileError:
    """The error for ``path`` (of file mode ``mode``) that is not a regular file: its kind and the repair."""
    kind = next((name for test, name in FILE_KINDS if test(mode)), "not a regular file")
    return NotRegularFileError(
        f"{path} is {kind}, not a regular file: refusing to {action} it. Repair: move it away or delete it "
        f"(rm -r '{path}', if nothing else needs it), or give another path; then run again."
    )


def require_regular_or_absent(path: str | os.PathLike) -> None:
    """Raise NotRegularFileError when ``path`` exists (following symlinks) and is not a regular file."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise not_regular(path, mode, "replace")


def read_regular_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of the regular file ``path``; NotRegularFileError (never a read that hangs) for a FIFO,
    a device, a socket or a folder."""
    path = os.fspath(path)
    mode = os.stat(path).st_mode  # FileNotFoundError as usual
    if not stat.S_ISREG(mode):
        raise not_regular(path, mode, "read")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks, even if swapped for a FIFO
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path, mode, "read")
        return handle.read()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``path`` is always either absent, the previous file, or the complete new one.  A ``path`` that is a
    FIFO, a device, a socket or a folder is refused (NotRegularFileError), before and after the write.
    """
    path = os.fspath(path)
    require_regular_or_absent(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        require_regular_or_absent(path)  # made meanwhile (say by mkfifo): still refused
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Save ``arrays`` as an uncompressed ``.npz`` at ``path``; no partial file is ever visible."""
    atomic_write(path, lambda handle: np.savez(handle, **arrays))
