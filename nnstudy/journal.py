"""The Optuna journal file: an ``flock`` write lock, a torn last record cut off (under that lock) before any
append, and a damaged record reported with the file, its line and the repair."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalStorage

log = logging.getLogger("nnstudy.journal")
TAIL_CHUNK = 64 * 1024


class DamagedJournalError(ValueError):
    """A record of the journal, other than a torn last one, that is not the JSON Optuna writes."""


class JournalFlock:
    """The journal's write lock (Optuna's journal-lock interface: ``acquire`` / ``release``) as an
    ``flock`` on ``<journal>.flock``, which the kernel releases when its holder dies.  Optuna's default
    (a symlink ``<journal>.lock``) outlives a kill -9 and is broken only after a 30 s grace period, by
    any waiter, which can break a live lock too; and with a relative journal path the symlink dangles,
    so a stale one is never broken and every writer waits for ever."""

    def __init__(self, journal: str | Path) -> None:
        self.path = Path(journal).with_name(Path(journal).name + ".flock")
        self.handle = None

    def acquire(self) -> bool:
        handle = open(self.path, "a")  # noqa: SIM115 (closed by release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        self.handle = handle
        return True

    def release(self) -> None:
        handle, self.handle = self.handle, None
        if handle is None:
            raise RuntimeError(f"{self.path}: released without being held")
        handle.close()  # closing the only descriptor drops the lock


def torn_tail_start(path: str | Path) -> int | None:
    """The offset where a torn last record (bytes after the last newline) starts, or None when the file
    is empty or ends with a newline."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return None
        handle.seek(end - 1)
        if handle.read(1) == b"\n":
            return None
        position = end
        while position > 0:
            start = max(0, position - TAIL_CHUNK)
            handle.seek(start)
            newline = handle.read(position - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            position = start
        return 0


def cut_torn_tail(path: str | Path) -> int:
    """Truncate a torn last record (left by a kill or a full disk in the middle of an append); returns the
    number of bytes cut.  Call it only while holding the journal's write lock: then no append is under way,
    so bytes after the last newline are the remains of a writer that died."""
    start = torn_tail_start(path)
    if start is None:
        return 0
    size = os.path.getsize(path)
    os.truncate(path, start)
    log.warning("%s: cut a torn last record (%d bytes at offset %d) left by an interrupted write",
                path, size - start, start)  # fmt: skip
    return size - start


def damaged(path: str | Path, line: int, reason: str) -> DamagedJournalError:
    """The error for a bad record: the file, the line and the repair."""
    return DamagedJournalError(
        f"the Optuna journal {path} is damaged at line {line}: {reason}. That line is not a record Optuna "
        f"wrote whole (a full disk, a copy cut short or an edit). Repair: delete that line "
        f"(sed -i '{line}d' '{path}') and run the same snakemake command again; if Optuna still cannot read "
        f"the journal, delete it (rm '{path}') and rerun, which runs the searches again from the start."
    )


class CheckedJournalFileBackend(JournalFileBackend):
    """Optuna's journal file backend with two repairs: a torn last record is cut off under the write lock
    before every append (so the new record does not run on from it and make both unreadable), and a bad
    record elsewhere raises DamagedJournalError naming the file, the line and the repair."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(entry, separators=(",", ":")) + "\n" for entry in logs)
        self._lock.acquire()
        try:
            cut_torn_tail(self._file_path)
            with open(self._file_path, "ab") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            self._lock.release()

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """The records from ``log_number_from`` on (as Optuna's); stops before a last line that is still
        being written (or torn), and raises DamagedJournalError on a complete line that is not JSON."""
        offsets = self._log_number_offset
        start = log_number_from if log_number_from in offsets else 0
        with open(self._file_path, "rb") as handle:
            remaining = os.fstat(handle.fileno()).st_size - offsets[start]
            handle.seek(offsets[start])
            for log_number, line in enumerate(handle, start=start):
                remaining -= len(line)
                if remaining < 0 or not line.endswith(b"\n"):
                    return  # appended after we looked, or a torn last record (cut before the next append)
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise damaged(self._file_path, log_number + 1, f"not a JSON record ({exc})") from None
                if not isinstance(record, dict):
                    raise damaged(self._file_path, log_number + 1, "a JSON value that is not a record (an object)")
                offsets.setdefault(log_number + 1, offsets[log_number] + len(line))
                if log_number >= log_number_from:
                    yield record


def open_journal(path: str | Path) -> JournalStorage:
    """A JournalStorage on the journal file ``path`` with the flock write lock and the checked backend."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(CheckedJournalFileBackend(str(path), lock_obj=JournalFlock(path)))


__all__ = ["CheckedJournalFileBackend", "DamagedJournalError", "JournalFlock", "cut_torn_tail", "open_journal"]
