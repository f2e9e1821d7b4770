"""Atomic writes for the pipeline's outputs: a temporary file beside the target, then a rename."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnlib._io import atomic_savez, atomic_write

__all__ = ["atomic_savez", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent, the old file, or complete."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text, written atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Pretty JSON, written atomically (NaN is refused: it is not JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
