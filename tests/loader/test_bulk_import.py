"""loader.bulk.BulkImport against fakes of the server's import jobs, the object store and the catalogue:
each transition, and a crash at every point of a run followed by a rerun. No Milvus; a real HDF5 file and
real staged files."""

from __future__ import annotations

import io
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from catalog.import_jobs import Phase, TaskState, phase_of
from catalog.milvus23 import STALL_SECONDS
from loader import bulk
from loader.bulk import BulkError, BulkImport
from loader.object_store import S3Target, object_key
from loader.options import ImportOptions
from loader.progress import Summary
from loader.source import inspect_file
from loader.state import JOB_RESTARTS, JOB_TRIES, ImportState, JobState
from tests.loader.conftest import write_classic

RESTARTED = "task marked failed as service restarted"
GOOD = [("Pending", ""), ("Started", ""), ("Persisted", ""), ("Completed", "")]


class Crash(BaseException):
    """The loader dies here, as with SIGKILL: no later line of it runs."""


@dataclass
class Task:
    files: list[str]
    script: list[tuple[str, str]]  # (state, failure reason) per poll; the last one repeats
    polls: int = 0
    names: list[str] | None = None  # what it read from its files
    finished: bool = False


@dataclass
class FakeServer:
    """Milvus's import jobs and bucket in memory. A task reads its files when first asked about (failing
    when they are gone) and stores their names when it completes."""

    tasks: dict[int, Task] = field(default_factory=dict)
    scripts: list[list[tuple[str, str]]] = field(default_factory=list)  # for the next tasks, then GOOD
    imported: list[str] = field(default_factory=list)  # names stored by import jobs (duplicates kept)
    upserted: list[str] = field(default_factory=list)  # names written through the insert path
    bucket: dict[str, bytes] = field(default_factory=dict)
    crash_on_submit: int | None = None  # the loader dies once the server has started its nth task
    busy_at_submit: list[list[int]] = field(default_factory=list)  # our unfinished tasks at each submit
    seen: list[tuple[str, bool]] = field(default_factory=list)  # (state told, were the staged files there)

    def read(self, files: list[str]) -> list[str] | None:
        name = next(f for f in files if f.endswith("name.npy"))
        if name in self.bucket:
            return np.load(io.BytesIO(self.bucket[name])).tolist()
        return np.load(name).tolist() if Path(name).exists() else None

    def poll(self, task_id: int) -> TaskState:
        t = self.tasks[task_id]
        name, reason = t.script[min(t.polls, len(t.script) - 1)]
        t.polls += 1
        if t.names is None and name not in ("Failed", "Failed and cleaned"):
            t.names = self.read(t.files)
            if t.names is None:
                t.script, name, reason = [("Failed", "file not found")], "Failed", "file not found"
        if phase_of(name) in (Phase.COMPLETED, Phase.FAILED) and not t.finished:
            t.finished = True
            if phase_of(name) is Phase.COMPLETED:
                self.imported.extend(t.names)
        self.seen.append((name, all(Path(f).exists() for f in t.files if f.startswith("/"))))
        return TaskState(task_id, name, phase_of(name), reason, len(t.names or []))


class FakeJobs:
    """catalog.import_jobs.ImportJobs over a FakeServer."""

    def __init__(self, server: FakeServer):
        self.server = server

    def newest(self) -> int:
        return max(self.server.tasks, default=-1)

    def find(self, file: str, newer_than: int = -1) -> int | None:
        task = max((i for i, t in self.server.tasks.items() if file in t.files), default=None)
        return task if task is not None and task > newer_than else None

    def submit(self, files: list[str], newer_than: int = -1) -> int:
        found = self.find(files[0], newer_than)
        if found is not None:
            return found
        self.server.busy_at_submit.append([i for i, t in self.server.tasks.items() if not t.finished])
        task = max(self.server.tasks, default=100) + 1
        script = self.server.scripts.pop(0) if self.server.scripts else GOOD
        self.server.tasks[task] = Task(list(files), script)
        if self.server.crash_on_submit == len(self.server.tasks):
            raise Crash  # the task runs; the loader never hears of it
        return task

    def state(self, task: int) -> TaskState:
        return self.server.poll(task)

    def close(self) -> None:
        pass


class FakeStore:
    """loader.object_store.ObjectStore over the FakeServer's bucket."""

    def __init__(self, server: FakeServer):
        self.server = server

    def upload(self, root: Path, paths: list[Path]) -> list[str]:
        keys = [object_key("bulk-import", root, p) for p in paths]
        for key, path in zip(keys, paths):
            self.server.bucket[key] = path.read_bytes()
        return keys

    def remove(self, keys: list[str]) -> None:
        for key in keys:
            self.server.bucket.pop(key, None)


class FakeCatalog:
    """The few Catalog calls bulk mode makes: a collection holding `stored` names already."""

    collection = "images"

    def __init__(self, server: FakeServer, stored: list[str] = ()):
        self.server, self.stored, self.calls = server, list(stored), []

    def existing(self, names):
        have = set(self.stored) | set(self.server.imported) | set(self.server.upserted)
        return {n for n in names if n in have}

    def upsert(self, names, vectors, metas=None):
        assert len(names) == len(vectors)
        self.server.upserted.extend(names)
        return len(names)

    def build_index(self, index):
        self.calls.append("build_index")

    def load(self):
        self.calls.append("load")


class CrashingState(ImportState):
    """An ImportState whose `crash_at`-th save completes, then the loader dies."""

    crash_at: int | None = None
    saves = 0

    def save(self) -> None:
        super().save()
        self.saves += 1
        if self.saves == self.crash_at:
            raise Crash


class Env:
    """One file, one fake server and what a loader run needs; `run()` is one run of the command."""

    def __init__(self, tmp_path: Path, rows: int = 3500, s3: bool = False, stored: list[str] = (), **opts):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_path
        self.h5 = tmp_path / "a.h5"
        self.names = write_classic(self.h5, rows, dim=8)[1]
        self.server = FakeServer()
        self.catalog = FakeCatalog(self.server, stored)
        self.s3 = s3
        settings = dict(mode="bulk", bulk_dir=tmp_path / "stage", bulk_rows=1000, batch_size=500, quiet=True,
                        state_dir=tmp_path / "state", retry_seconds=0)
        self.opts = ImportOptions(**{**settings, **opts})
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def state(self, crash_at: int | None = None) -> CrashingState:
        datasets = ("dataset_1", "dataset_2")
        st = CrashingState(self.opts.state_dir, self.h5, "fake://", "images", "bulk", datasets)
        st.load(1)
        st.crash_at = crash_at
        return st

    def bulk_import(self, state: ImportState | None = None) -> BulkImport:
        src = inspect_file(self.h5, self.opts)
        src.created = not self.catalog.stored
        store = FakeStore(self.server) if self.s3 else None
        return BulkImport(src, self.catalog, self.opts, state or self.state(), Summary(),
                          jobs=FakeJobs(self.server), store=store, sleep=self.sleep, clock=lambda: self.now)

    def run(self, crash_at: int | None = None) -> tuple[bool, BulkImport]:
        imp = self.bulk_import(self.state(crash_at))
        return imp.run(), imp

    def record(self):
        return self.state().record

    def assert_exact(self) -> None:
        """Every name once: imported or upserted, never imported twice nor over a stored one."""
        counts = Counter(self.catalog.stored + self.server.imported)
        assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1][:5]
        assert set(counts) | set(self.server.upserted) == set(self.names)


# -- a run -------------------------------------------------------------------------------------------
def test_a_run_imports_every_row_once_one_job_at_a_time(tmp_path):
    env = Env(tmp_path)
    needs_flush, imp = env.run()
    env.assert_exact()
    assert not needs_flush and imp.summary.imported == 3500 and imp.summary.read == 3500
    rec = env.record()
    assert [(j.first, j.end, j.rows, j.state) for j in rec.bulk.jobs] == [
        (0, 1000, 1000, JobState.DONE), (1000, 2000, 1000, JobState.DONE), (2000, 3000, 1000, JobState.DONE),
        (3000, 3500, 500, JobState.DONE)]
    assert rec.rows_done == 3500 and rec.bulk.fresh and rec.bulk.task_floor == -1
    assert env.server.busy_at_submit == [[], [], [], []]  # no job of ours ever waited queued in the server
    assert not (tmp_path / "stage").exists() or list((tmp_path / "stage").iterdir()) == []  # staging removed
    assert env.catalog.calls == []  # a new collection: no upserts, so no index or load needed yet


def test_staged_files_go_once_the_server_has_read_them(tmp_path):
    env = Env(tmp_path, rows=1000)
    env.run()
    states = [s for s, _ in env.server.seen]
    read = states.index("Persisted")
    assert all(there for _, there in env.server.seen[:read + 1])  # never before the server read them
    assert env.server.seen[-1] == ("Completed", False)  # gone before the job completed


def test_names_already_stored_are_upserted_not_imported(tmp_path):
    names = write_classic(tmp_path / "a.h5", 3500, dim=8)[1]
    env = Env(tmp_path, stored=names[500:1500])
    needs_flush, imp = env.run()
    env.assert_exact()
    assert needs_flush and sorted(env.server.upserted) == sorted(names[500:1500])
    assert env.catalog.calls == ["build_index", "load"]  # upserts need the collection loaded
    assert imp.summary.imported == 3500 and env.record().bulk.upserted == 1000


def test_object_storage_uploads_then_deletes_objects_and_the_default_root(tmp_path, monkeypatch):
    root = tmp_path / "shm-root"
    monkeypatch.setattr(bulk, "staging_root", lambda *a, **k: root)
    env = Env(tmp_path, s3=True, bulk_dir=None, bulk_s3=S3Target("s3:9000", "k", "s"))
    uploaded = []  # (files each submit names, the job's state on record then)
    real_submit = FakeJobs.submit

    def submit(self, files, newer_than=-1):
        uploaded.append((list(files), env.record().bulk.open_jobs()[-1].state))
        return real_submit(self, files, newer_than)

    monkeypatch.setattr(FakeJobs, "submit", submit)
    env.run()
    env.assert_exact()
    files, state = uploaded[0]
    assert files[0].startswith("bulk-import/images-") and state is JobState.SUBMITTING  # keys, recorded first
    assert env.server.bucket == {} and not root.exists()
    assert env.record().bulk.stage_root == str(root)


def test_a_restart_failure_is_resubmitted_after_the_grace_without_counting(tmp_path):
    env = Env(tmp_path, rows=1000, restart_grace=40)
    env.server.scripts = [[("Started", ""), ("Failed", RESTARTED)]]
    env.run()
    env.assert_exact()
    (job,) = env.record().bulk.jobs
    assert (job.restarts, job.failures, job.state) == (1, 0, JobState.DONE) and 40 in env.sleeps
    assert len(env.server.tasks) == 2


def test_restarts_past_the_limit_count_as_tries(tmp_path):
    env = Env(tmp_path, rows=1000, restart_grace=1)
    env.server.scripts = [[("Failed", RESTARTED)]] * (JOB_RESTARTS + JOB_TRIES)
    with pytest.raises(BulkError, match=f"failed {JOB_TRIES} times: {RESTARTED}"):
        env.run()
    assert len(env.server.tasks) == JOB_RESTARTS + JOB_TRIES and env.sleeps.count(1) == JOB_RESTARTS


def test_a_failing_job_is_retried_given_up_and_retried_by_a_rerun(tmp_path):
    env = Env(tmp_path, rows=1000)
    env.server.scripts = [[("Started", ""), ("Failed", "bad file")]] * JOB_TRIES
    with pytest.raises(BulkError, match=f"failed {JOB_TRIES} times: bad file; fix the cause"):
        env.run()
    (job,) = env.record().bulk.jobs
    assert job.state is JobState.FAILED and len(env.server.tasks) == JOB_TRIES and env.server.imported == []
    env.run()  # the cause fixed: the same command again
    env.assert_exact()
    assert env.record().bulk.jobs[0].state is JobState.DONE and len(env.server.tasks) == JOB_TRIES + 1


def test_a_job_that_stops_moving_is_reported(tmp_path):
    env = Env(tmp_path, rows=1000)
    env.server.scripts = [[("Started", "")]]
    with pytest.raises(BulkError, match=f"has not moved for {STALL_SECONDS:.0f} s \\(state Started\\)"):
        env.run()
    assert STALL_SECONDS < env.now < STALL_SECONDS + 1
    assert env.record().bulk.jobs[0].state is JobState.SUBMITTED  # tracked: a later rerun follows it


def test_a_lost_submit_is_found_again_and_never_imported_twice(tmp_path):
    env = Env(tmp_path)
    env.server.crash_on_submit = 2  # the second job's task starts; the loader dies before hearing of it
    with pytest.raises(Crash):
        env.run()
    assert env.record().bulk.jobs[1].state is JobState.SUBMITTING
    env.run()
    env.assert_exact()
    assert len(env.server.tasks) == 4  # the second job's task was adopted, not started again


def test_tasks_of_an_earlier_import_are_never_adopted(tmp_path):
    env = Env(tmp_path, rows=1000)
    env.run()  # an earlier import of the same file, through the same staging path
    env.server.imported.clear()
    env.state().clear()
    env.server.crash_on_submit = None
    st = env.state(crash_at=4)  # start, floor, STAGED, SUBMITTING: dies before the submit
    with pytest.raises(Crash):
        env.bulk_import(st).run()
    assert env.record().bulk.jobs[0].state is JobState.SUBMITTING and env.record().bulk.task_floor == 101
    env.run()
    assert sorted(env.server.imported) == sorted(env.names) and len(env.server.tasks) == 2  # a task of its own


def test_staged_files_that_are_gone_are_written_again(tmp_path, caplog):
    env = Env(tmp_path)
    st = env.state(crash_at=4)  # start, floor, first job STAGED, then SUBMITTING: dies before the submit
    with pytest.raises(Crash):
        env.bulk_import(st).run()
    shutil.rmtree(tmp_path / "stage")
    env.run()
    env.assert_exact()
    assert "the staged files of rows 0-1000 are gone; writing them again" in caplog.text


def test_a_job_whose_rows_were_all_stored_meanwhile_is_done_when_restaged(tmp_path):
    names = write_classic(tmp_path / "a.h5", 1000, dim=8)[1]
    env = Env(tmp_path, rows=1000, stored=names[:1])
    st = env.state(crash_at=3)  # start, floor, job STAGED
    with pytest.raises(Crash):
        env.bulk_import(st).run()
    shutil.rmtree(tmp_path / "stage")
    env.catalog.stored = list(names)  # another import stored them all meanwhile
    needs_flush, imp = env.run()
    (job,) = env.record().bulk.jobs
    assert (job.state, job.rows) == (JobState.DONE, 0) and env.server.tasks == {} and needs_flush
    assert imp.summary.imported == 1000


# -- a crash anywhere --------------------------------------------------------------------------------
def _saves_of_a_run(tmp_path: Path, **kw) -> int:
    env = Env(tmp_path / "count", **kw)
    st = env.state()
    env.bulk_import(st).run()
    return st.saves


@pytest.mark.parametrize("s3", [False, True], ids=["local", "s3"])
@pytest.mark.parametrize("files", ["kept", "lost"])
def test_a_crash_after_any_save_or_submit_then_a_rerun_is_exact(tmp_path, s3, files):
    """SIGKILL after every record write, and after every submit the server received, each followed by the
    same command again (with the staged files kept, or gone: in memory before a reboot)."""
    kw = dict(s3=s3) if not s3 else dict(s3=True, bulk_s3=S3Target("s3:9000", "k", "s"))
    saves = _saves_of_a_run(tmp_path, **kw)
    assert saves >= 4 * 4 + 2
    points = [("save", n) for n in range(1, saves)] + [("submit", n) for n in range(1, 5)]
    for kind, n in points:
        env = Env(tmp_path / f"{kind}-{n}", **kw)
        env.server.crash_on_submit = n if kind == "submit" else None
        with pytest.raises(Crash):
            env.bulk_import(env.state(crash_at=n if kind == "save" else None)).run()
        if files == "lost":
            shutil.rmtree(env.tmp / "stage", ignore_errors=True)
        env.server.crash_on_submit = None
        _, imp = env.run()
        env.assert_exact()
        assert imp.summary.imported == 3500, (kind, n)
        assert all(not busy for busy in env.server.busy_at_submit), (kind, n)
        assert all(j.state is JobState.DONE for j in env.record().bulk.jobs), (kind, n)
