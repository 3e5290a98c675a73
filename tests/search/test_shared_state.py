"""What the search service's worker processes share: locks, counters, records, and near-duplicate jobs run
once for all workers. Two `SharedDir` objects on one directory stand for two workers (flock locks belong to
open files, so they exclude each other within one process as across processes); one test forks."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest

from search_service.duplicates import DuplicateFinder, Job, _record_name
from search_service.shared_state import SharedDir
from tests.search.fakes import FakeCatalog
from tests.search.test_search_features import clustered
from tests.search.conftest import wait_until


def test_a_lock_held_by_one_worker_is_seen_by_another(tmp_path):
    a, b = SharedDir(tmp_path), SharedDir(tmp_path)
    held = a.try_lock("job")
    assert held is not None
    assert b.try_lock("job") is None and b.is_locked("job")
    SharedDir.release(held)
    assert not b.is_locked("job")


def test_lock_serialises_threads_and_workers(tmp_path):
    a, b = SharedDir(tmp_path), SharedDir(tmp_path)
    inside, most = [0], [0]

    def enter(shared: SharedDir) -> None:
        for _ in range(20):
            with shared.lock("create"):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.001)
                inside[0] -= 1

    threads = [threading.Thread(target=enter, args=(s,)) for s in (a, a, b, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def _bump_many(root: str, n: int) -> None:
    shared = SharedDir(root)
    for _ in range(n):
        shared.bump("writes")


def test_counter_counts_every_process_bumps(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_bump_many, args=(str(tmp_path), 200)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert SharedDir(tmp_path).counter("writes") == 600
    assert SharedDir(tmp_path).counter("never") == 0


def test_records_are_replaced_whole_and_listed_oldest_first(tmp_path):
    shared = SharedDir(tmp_path)
    assert shared.read_json("r1") is None
    shared.write_json("r1", {"a": 1})
    time.sleep(0.01)
    shared.write_json("r2", [1, 2])
    shared.write_json("r1", {"a": 2})
    assert shared.read_json("r1")[0] == {"a": 2}
    assert [n for n, _ in shared.records("r")] == ["r2", "r1"]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    shared.remove("r2")
    assert [n for n, _ in shared.records("r")] == ["r1"]


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x y"])
def test_names_are_plain_file_names(tmp_path, name):
    with pytest.raises(ValueError):
        SharedDir(tmp_path).path(name)


def test_a_temporary_directory_goes_with_its_object():
    shared = SharedDir.temporary()
    root = shared.root
    shared.bump("x")
    assert root.exists()
    del shared
    assert not root.exists()


# -- near-duplicate jobs across workers ----------------------------------------------------------------------

class CountingCatalog(FakeCatalog):
    """Counts full scans (find_groups pages through iter_rows once per job); `gate` holds a scan back."""

    def __init__(self, name: str):
        super().__init__(name)
        self.scans = 0
        self.gate: threading.Event | None = None

    def iter_rows(self, *args, **kwargs):
        self.scans += 1
        if self.gate is not None:
            assert self.gate.wait(30)
        yield from super().iter_rows(*args, **kwargs)


@pytest.fixture
def groups_catalogue():
    names, vectors = clustered(4, 2, 30)
    cat = CountingCatalog("dups")
    cat.ensure(vectors.shape[1], "fp")
    cat.upsert(names, vectors)
    return cat


class SlowToFinish(SharedDir):
    """Writes a finished job's record late, as a busy disk would: what a worker serves must not run ahead of
    the record the other workers read (CI once caught both races below by chance)."""

    def write_json(self, name, value):
        if isinstance(value, dict) and value.get("finished") is not None:
            time.sleep(0.2)
        super().write_json(name, value)


def done(finder: DuplicateFinder, threshold: float, count: int) -> Job:
    assert wait_until(lambda: finder.job(threshold, count).groups is not None, timeout=30)
    return finder.job(threshold, count)


def test_one_job_for_all_workers_and_every_worker_serves_its_groups(tmp_path, groups_catalogue):
    cat = groups_catalogue
    cat.gate = threading.Event()
    a = DuplicateFinder(cat, shared=SharedDir(tmp_path))
    b = DuplicateFinder(cat, shared=SharedDir(tmp_path))
    n = cat.count()
    first = a.job(0.95, n)
    assert first.running
    seen_by_b = b.job(0.95, n)  # the other worker sees it running and starts nothing
    assert seen_by_b.running and seen_by_b.groups is None
    cat.gate.set()
    groups_a, groups_b = done(a, 0.95, n).groups, done(b, 0.95, n).groups
    assert cat.scans == 1
    assert [g.names for g in groups_b] == [g.names for g in groups_a] and len(groups_a) == 4


def test_a_write_through_any_worker_makes_the_groups_stale(tmp_path, groups_catalogue):
    cat = groups_catalogue
    a = DuplicateFinder(cat, shared=SlowToFinish(tmp_path))
    b = DuplicateFinder(cat, shared=SharedDir(tmp_path))
    n = cat.count()
    done(a, 0.95, n)
    assert cat.scans == 1
    b.changed()
    cat.delete(["g000-0.jpg"])
    assert len(done(a, 0.95, n - 1).groups) == 3
    assert cat.scans == 2


def test_a_job_whose_worker_died_is_started_again(tmp_path, groups_catalogue):
    cat = groups_catalogue
    shared = SharedDir(tmp_path)
    n = cat.count()
    # A running record whose lock nobody holds: its worker was killed mid-job.
    shared.write_json(_record_name(0.95), Job(0.95, n, 0, scanned=10).to_record())
    finder = DuplicateFinder(cat, shared=shared)
    assert len(done(finder, 0.95, n).groups) == 4 and cat.scans == 1


def test_at_most_keep_thresholds_are_kept(tmp_path, groups_catalogue):
    finder = DuplicateFinder(groups_catalogue, keep=2, shared=SlowToFinish(tmp_path))
    n = groups_catalogue.count()
    for t in (0.9, 0.95, 0.99):
        done(finder, t, n)
    assert [name for name, _ in finder.shared.records("duplicates-")] == [_record_name(0.95), _record_name(0.99)]


def test_groups_survive_their_record_exactly(tmp_path, groups_catalogue):
    finder = DuplicateFinder(groups_catalogue, shared=SharedDir(tmp_path))
    n = groups_catalogue.count()
    job = done(finder, 0.95, n)
    again = Job.from_record(job.to_record())
    assert [(g.names, g.score, g.pairs) for g in again.groups] == [(g.names, g.score, g.pairs) for g in job.groups]
    assert np.isclose(again.finished, job.finished) and again.count == n
