"""catalog.import_jobs and catalog.milvus23 without a server: the 2.3 calls are replaced by fakes."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest
from pymilvus import utility

from catalog import milvus23
from catalog.errors import CallFailed, MilvusUnavailable
from catalog.import_jobs import ImportJobs, Phase, TaskState, phase_of


class FakeOrm:
    """The 2.3 bulk-insert calls over a list of tasks; `fail` holds errors to raise first, one per call."""

    def __init__(self, tasks: dict[int, list[str]] | None = None):
        self.tasks = dict(tasks or {})  # task id -> files
        self.states: dict[int, SimpleNamespace] = {}
        self.fail: list[Exception] = []
        self.calls: list[str] = []
        self.lose_reply = False  # the next submit starts its task, then the reply is lost

    def call(self, fn, *args, **kwargs):
        self.calls.append(fn)
        if self.fail:
            raise self.fail.pop(0)
        if fn == "do_bulk_insert":
            task = max(self.tasks, default=100) + 1
            self.tasks[task] = kwargs["files"]
            if self.lose_reply:
                self.lose_reply = False
                raise MilvusUnavailable("connection reset", fn, "reset")
            return task
        if fn == "list_bulk_insert_tasks":
            return [SimpleNamespace(task_id=t, infos={"files": ",".join(f)}) for t, f in self.tasks.items()]
        if fn == "get_bulk_insert_state":
            return self.states[args[0]]
        raise AssertionError(fn)

    def close(self):
        self.calls.append("close")


def _jobs(orm: FakeOrm, retry_seconds: float = 0.0) -> ImportJobs:
    jobs = ImportJobs.__new__(ImportJobs)  # no connection: the calls go to the fake
    jobs.collection, jobs.retry_seconds, jobs.api = "c", retry_seconds, orm
    return jobs


def test_server_state_names_map_to_phases():
    names = ("Pending", "Started", "Persisted", "Completed", "Failed", "Failed and cleaned")
    assert [phase_of(n) for n in names] == [Phase.RUNNING, Phase.RUNNING, Phase.READ, Phase.COMPLETED,
                                            Phase.FAILED, Phase.FAILED]
    restarted = TaskState(7, "Failed", Phase.FAILED, "task marked failed as service restarted")
    assert restarted.restarted and not TaskState(7, "Failed", Phase.FAILED, "bad file").restarted
    assert not TaskState(7, "Started", Phase.RUNNING, "service restarted").restarted  # only failed tasks


def test_state_reads_name_reason_and_rows():
    orm = FakeOrm()
    orm.states[5] = SimpleNamespace(state_name="Failed", infos={"failed_reason": "no such file"}, row_count=0)
    orm.states[6] = SimpleNamespace(state_name="Completed", infos={}, row_count=1000)
    assert _jobs(orm).state(5) == TaskState(5, "Failed", Phase.FAILED, "no such file", 0)
    assert _jobs(orm).state(6) == TaskState(6, "Completed", Phase.COMPLETED, "", 1000)


def test_find_and_newest_respect_the_floor():
    orm = FakeOrm({101: ["a/name.npy", "a/vector.npy"], 102: ["b/name.npy"], 103: ["a/name.npy"]})
    jobs = _jobs(orm)
    assert jobs.newest() == 103 and _jobs(FakeOrm()).newest() == -1
    assert jobs.find("a/name.npy") == 103  # the newest task of the file
    assert jobs.find("a/name.npy", newer_than=103) is None  # older tasks are another import's
    assert jobs.find("c/name.npy") is None


def test_submit_starts_a_task_unless_a_newer_one_for_the_files_exists():
    orm = FakeOrm({101: ["a/name.npy"]})
    jobs = _jobs(orm)
    assert jobs.submit(["a/name.npy"], newer_than=101) == 102  # 101 is older than the floor: not adopted
    assert jobs.submit(["a/name.npy"], newer_than=101) == 102  # a retried call finds its own task
    assert orm.calls.count("do_bulk_insert") == 1


def test_a_submit_whose_reply_was_lost_is_not_started_twice():
    orm = FakeOrm()
    orm.lose_reply = True
    task = _jobs(orm, retry_seconds=5).submit(["a/name.npy"])
    assert task == 101 and orm.calls.count("do_bulk_insert") == 1 and list(orm.tasks) == [101]


def test_unavailable_is_retried_and_input_errors_are_not():
    orm = FakeOrm({101: ["a"]})
    orm.fail = [MilvusUnavailable("down", "list_bulk_insert_tasks", "down")]
    assert _jobs(orm, retry_seconds=5).newest() == 101
    orm.fail = [CallFailed("bad", "list_bulk_insert_tasks", "bad", code=1100, retriable=False)]
    with pytest.raises(CallFailed):
        _jobs(orm, retry_seconds=5).newest()
    orm.fail = [MilvusUnavailable("down", "list_bulk_insert_tasks", "down")]
    with pytest.raises(MilvusUnavailable):
        _jobs(orm, retry_seconds=0).newest()  # 0: one try


def test_ctrl_c_during_an_import_rpc_waits_for_the_call(monkeypatch):
    """Milvus 2.3 crashes when an import RPC is cancelled mid-flight (milvus-io/milvus#35539): an interrupt
    arriving during the call is delivered once the call has returned, and the usual handler is back."""
    calls = []

    def state(task, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the call is in flight
        time.sleep(0.05)  # the handler would run here, between bytecodes, if it were not held
        calls.append(task)
        return "Completed"

    monkeypatch.setattr(utility, "get_bulk_insert_state", state)
    orm = milvus23.OrmBulkInsert.__new__(milvus23.OrmBulkInsert)  # no server: only the call wrapper
    orm.alias, orm.uri, orm.timeout = "unused", "http://127.0.0.1:9", 1.0
    # Python's own Ctrl-C handler, whatever a library imported earlier in this process installed instead
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            orm.call("get_bulk_insert_state", 7)
        assert calls == [7]  # the call completed before the interrupt was raised
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler is back
    finally:
        signal.signal(signal.SIGINT, outer)


def test_a_failing_call_raises_a_typed_error(monkeypatch):
    from pymilvus.exceptions import MilvusException

    def state(task, **kwargs):
        raise MilvusException(code=2, message="service unavailable")

    monkeypatch.setattr(utility, "get_bulk_insert_state", state)
    orm = milvus23.OrmBulkInsert.__new__(milvus23.OrmBulkInsert)
    orm.alias, orm.uri, orm.timeout = "unused", "http://127.0.0.1:9", 1.0
    with pytest.raises(MilvusUnavailable) as err:
        orm.call("get_bulk_insert_state", 7)
    assert err.value.call == "get_bulk_insert_state"
