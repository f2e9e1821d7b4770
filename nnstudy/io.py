"""Atomic writes for the pipeline's outputs: a temporary file beside the target, then a rename."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnlib._io import NotRegularFileError, atomic_savez, atomic_write, read_regular_bytes

__all__ = [
    "NotRegularFileError",
    "atomic_savez",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json",
    "read_regular_bytes",
]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent, the old file, or complete (a FIFO, device or folder
    at ``path`` is refused: NotRegularFileError)."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text, written atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Pretty JSON, written atomically (NaN is refused: it is not JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


class DamagedFileError(ValueError):
    """A declared output that exists but is not what its job writes (e.g. truncated by a full disk)."""


def read_json(path: str | Path) -> Any:
    """A JSON output of the workflow; a damaged one raises DamagedFileError naming the file and the fix, a FIFO,
    device or folder NotRegularFileError (never a read that hangs)."""
    path = Path(path)
    data = read_regular_bytes(path)
    try:
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedFileError(
            f"{path} is damaged ({exc}); it is not the complete file its job writes. Delete it and run the same "
            f"snakemake command again, which reruns only the job that writes it:  rm '{path}'"
        ) from None
