"""The Optuna journal after a kill or a full disk: a torn last record, a damaged record in the middle."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from nnstudy.journal import DamagedJournalError
from nnstudy.search import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def plain_storage(path: Path) -> JournalStorage:
    """Optuna's own journal storage, as any other writer or reader of the file would open it."""
    return JournalStorage(JournalFileBackend(str(path)))


def add_trials(storage, name: str, values: list[float]) -> None:
    study = optuna.load_study(study_name=name, storage=storage)
    for value in values:
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
        study.tell(trial, value)


def written_journal(tmp_path: Path) -> Path:
    """A journal with one study and three trials, written by Optuna's own storage."""
    journal = tmp_path / "optuna.journal"
    optuna.create_study(study_name="s", storage=plain_storage(journal))
    add_trials(plain_storage(journal), "s", [0.1, 0.2, 0.3])
    return journal


def test_a_torn_last_record_is_cut_before_the_next_append(tmp_path):
    journal = written_journal(tmp_path)
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code":6,"worker_id":"dead-writer","trial_id":3,"st')  # a kill mid-append
    storage = open_storage(f"journal:{journal}", tmp_path / "study")
    assert journal.read_bytes().endswith(b'"st'), "opening to read must not touch the file"
    add_trials(storage, "s", [0.4, 0.5])
    data = journal.read_bytes()
    assert data.startswith(whole) and data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode().splitlines()]  # every record readable
    assert all(r.get("worker_id") != "dead-writer" for r in records)
    for reader in (plain_storage(journal), open_storage(f"journal:{journal}", tmp_path / "study")):
        study = optuna.load_study(study_name="s", storage=reader)
        assert [t.value for t in study.get_trials()] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_a_damaged_record_in_the_middle_is_named_with_its_line_and_the_repair(tmp_path):
    journal = written_journal(tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [b'{"op_code": 4, "trial_\x00\x00garbage\n'] + lines[2:]))
    with pytest.raises(DamagedJournalError) as caught:
        open_storage(f"journal:{journal}", tmp_path / "study")
    message = str(caught.value)
    assert str(journal) in message and "line 3" in message
    assert f"sed -i '3d' '{journal}'" in message and f"rm '{journal}'" in message


def test_a_damaged_last_complete_record_is_named_too(tmp_path):
    journal = written_journal(tmp_path)
    journal.write_bytes(journal.read_bytes() + b"[1, 2]\n")
    n_lines = journal.read_bytes().count(b"\n")
    with pytest.raises(DamagedJournalError, match=f"damaged at line {n_lines}: "):
        open_storage(f"journal:{journal}", tmp_path / "study")
