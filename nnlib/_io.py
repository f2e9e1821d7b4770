"""Atomic file writes: a temporary file in the target folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np


def current_umask() -> int:
    """The process umask (mkstemp creates files 0600; finished files get the usual permissions)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``path`` is always either absent, the previous file, or the complete new one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Save ``arrays`` as an uncompressed ``.npz`` at ``path``; no partial file is ever visible."""
    atomic_write(path, lambda handle: np.savez(handle, **arrays))
