"""Insert mode writes rows never sent into a collection it created with plain inserts, and everything else
(an existing collection, rows a killed run may have sent, retried calls) with upserts. A fake catalogue
records each call (no servers); tests/loader/test_kill_resume.py checks the same against a real Milvus."""

from __future__ import annotations

import json

import pytest

from catalog.errors import MilvusUnavailable
from loader.importer import _import_insert
from loader.options import ImportOptions
from loader.progress import Summary
from loader.source import inspect_file
from loader.state import ImportState
from loader.upsert import insert_new_rows
from tests.loader.conftest import write_classic

ROWS, BATCH = 1000, 200


class RecordingCatalog:
    """Just the writes: which call each batch got (by its first name's row), and the record as it was
    saved when the call came."""

    def __init__(self, state: ImportState | None = None, fail_first_inserts: int = 0):
        self.calls: list[tuple[str, int]] = []
        self.sent_when_called: list[int] = []
        self.state, self.fail = state, fail_first_inserts

    def _write(self, call: str, names, vectors, metas) -> int:
        self.calls.append((call, int(names[0][4:10])))
        if self.state is not None:
            self.sent_when_called.append(json.loads(self.state.path.read_text())["sent"])
        return len(names)

    def insert(self, names, vectors, metas=None) -> int:
        if self.fail:
            self.fail -= 1
            raise MilvusUnavailable("lost the answer")
        return self._write("insert", names, vectors, metas)

    def upsert(self, names, vectors, metas=None) -> int:
        return self._write("upsert", names, vectors, metas)


def _run(tmp_path, created: bool, record: dict | None = None, in_flight: int = 1):
    path = tmp_path / "a.h5"
    if not path.exists():
        write_classic(path, ROWS, dim=8)
    opts = ImportOptions(batch_size=BATCH, in_flight=in_flight, quiet=True, state_dir=tmp_path / "state")
    src = inspect_file(path, opts)
    src.created = created
    state = ImportState(opts.state_dir, path, "http://milvus", "c", "insert", ("dataset_1", "dataset_2"))
    state.load("id-1")
    if record:  # what the killed run saved
        for k, v in record.items():
            setattr(state.record, k, v)
        state.save()
    cat = RecordingCatalog(state)
    summary = Summary()
    _import_insert(src, cat, opts, state, summary)
    return cat, state, summary


def test_a_collection_the_import_created_gets_inserts(tmp_path):
    cat, state, summary = _run(tmp_path, created=True, in_flight=4)
    assert sorted(cat.calls) == [("insert", r) for r in range(0, ROWS, BATCH)]
    assert summary.imported == ROWS and state.record.fresh and state.record.sent == ROWS


def test_the_sent_mark_runs_ahead_and_is_saved_once_per_stretch(tmp_path, monkeypatch):
    monkeypatch.setattr("loader.importer.SENT_AHEAD", 2)
    cat, _, _ = _run(tmp_path, created=True)
    # batches start at 0, 200, ...: the mark is saved before the first (0 -> 600) and the fourth (600 -> 1000)
    assert cat.sent_when_called == [600, 600, 600, 1000, 1000]


def test_an_existing_collection_gets_upserts(tmp_path):
    cat, state, _ = _run(tmp_path, created=False)
    assert cat.calls == [("upsert", r) for r in range(0, ROWS, BATCH)]
    assert not state.record.fresh


def test_a_rerun_upserts_what_the_killed_run_sent_then_inserts(tmp_path):
    # the first run created the collection, was acknowledged up to row 200 and had sent up to row 600
    cat, _, summary = _run(tmp_path, created=False, record={"fresh": True, "rows_done": 200, "sent": 600})
    assert cat.calls == [("upsert", 200), ("upsert", 400), ("insert", 600), ("insert", 800)]
    assert summary.read == ROWS


def test_how_far_the_file_was_sent_is_saved_before_each_call(tmp_path, monkeypatch):
    monkeypatch.setattr("loader.importer.SENT_AHEAD", 0)
    cat, _, _ = _run(tmp_path, created=True)
    assert cat.sent_when_called == [first + BATCH for _, first in cat.calls]


def test_a_retried_insert_becomes_an_upsert(tmp_path):
    # the first call may have been applied though its answer was lost: the retry must not store it twice
    names = ["img_000000.jpg", "img_000001.jpg"]
    cat = RecordingCatalog(fail_first_inserts=1)
    assert insert_new_rows(cat, names, None, retry_seconds=5) == 2
    assert cat.calls == [("upsert", 0)]
    with pytest.raises(MilvusUnavailable):
        insert_new_rows(RecordingCatalog(fail_first_inserts=1), names, None, retry_seconds=0)
