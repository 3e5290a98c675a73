"""DynamicBatcher: ordering, coalescing, partial failures, whole-batch failures, timeouts, overload."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from extractor_service.batching import BatcherClosed, BatcherOverloaded, DynamicBatcher


class Recorder:
    """A batch function that records the batches it saw and can block until released."""

    def __init__(self, fn=lambda items: [x * 10 for x in items]):
        self.fn = fn
        self.batches: list[list] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, items):
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(10)
        return self.fn(items)


@pytest.fixture
def make():
    made = []

    def _make(fn, **kw):
        b = DynamicBatcher(fn, **kw)
        made.append(b)
        return b

    yield _make
    for b in made:
        b.close()


def test_results_in_submission_order(make):
    b = make(Recorder(), max_batch_size=4, max_wait_s=0.01)
    assert b(list(range(11))) == [x * 10 for x in range(11)]


def test_concurrent_callers_are_coalesced_and_each_gets_its_own_result(make):
    rec = Recorder()
    b = make(rec, max_batch_size=64, max_wait_s=0.05)
    rec.release.clear()
    first = ThreadPoolExecutor(1).submit(b, [-1])  # occupies the worker so the rest queue up
    assert rec.entered.wait(5)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(b, [i]) for i in range(16)]
        while b.queued < 16:
            time.sleep(0.001)
        rec.release.set()
        assert [f.result(5) for f in futures] == [[i * 10] for i in range(16)]
    assert first.result(5) == [-10]
    assert len(rec.batches) == 2 and sorted(rec.batches[1]) == list(range(16))


def test_max_batch_size_is_respected(make):
    rec = Recorder()
    b = make(rec, max_batch_size=3, max_wait_s=0.01)
    b(list(range(10)))
    assert all(len(batch) <= 3 for batch in rec.batches)
    assert [x for batch in rec.batches for x in batch] == list(range(10))


def test_waits_for_more_items_up_to_max_wait(make):
    rec = Recorder()
    b = make(rec, max_batch_size=8, max_wait_s=0.3)
    futures = b.submit([1])
    time.sleep(0.05)
    futures += b.submit([2])
    assert [f.result(5) for f in futures] == [10, 20]
    assert rec.batches == [[1, 2]]


def test_zero_wait_runs_without_waiting(make):
    rec = Recorder()
    b = make(rec, max_batch_size=8, max_wait_s=0)
    assert b([5]) == [50]


def test_item_exception_fails_only_that_item(make):
    def fn(items):
        return [ValueError(f"bad {x}") if x == 2 else x for x in items]

    b = make(fn, max_batch_size=8, max_wait_s=0.05)
    futures = b.submit([1, 2, 3])
    assert futures[0].result(5) == 1 and futures[2].result(5) == 3
    with pytest.raises(ValueError, match="bad 2"):
        futures[1].result(5)


def test_batch_exception_reaches_every_caller_and_batcher_survives(make):
    calls = []

    def fn(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return items

    b = make(fn, max_batch_size=8, max_wait_s=0.05)
    futures = b.submit([1, 2, 3])
    for f in futures:
        with pytest.raises(RuntimeError, match="model exploded"):
            f.result(5)
    assert b([4]) == [4]


def test_wrong_number_of_outputs_is_an_error(make):
    b = make(lambda items: items[:-1], max_batch_size=8, max_wait_s=0.05)
    with pytest.raises(RuntimeError, match="2 outputs for 3 inputs"):
        b([1, 2, 3])


def test_timeout_and_cancelled_items_are_skipped(make):
    rec = Recorder()
    b = make(rec, max_batch_size=1, max_wait_s=0)
    rec.release.clear()
    blocker = b.submit(["blocker"])
    assert rec.entered.wait(5)
    with pytest.raises(TimeoutError):
        b(["late"], timeout=0.05)
    rec.release.set()
    assert blocker[0].result(5) == "blockerblockerblockerblockerblockerblockerblockerblockerblockerblocker"
    assert b(["next"]) == ["next" * 10]
    assert ["late"] not in rec.batches  # the caller gave up, so its item never ran


def test_overload_is_refused_not_queued_forever(make):
    rec = Recorder()
    b = make(rec, max_batch_size=1, max_wait_s=0, max_queue=3)
    rec.release.clear()
    b.submit([0])
    assert rec.entered.wait(5)
    b.submit([1, 2, 3])
    with pytest.raises(BatcherOverloaded):
        b.submit([4])
    rec.release.set()


def test_closed_batcher_refuses_but_finishes_queued_items():
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch_size=2, max_wait_s=0)
    futures = b.submit([1, 2, 3])
    b.close()
    assert [f.result(5) for f in futures] == [10, 20, 30]
    with pytest.raises(BatcherClosed):
        b.submit([4])


def test_invalid_settings():
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(lambda x: x, max_batch_size=0)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        DynamicBatcher(lambda x: x, workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_run_that_many_calls_at_once(make, workers):
    """Two calls meet at a barrier: only two workers can have both inside `fn` together."""
    meet = threading.Barrier(2, timeout=2)

    def fn(items):
        meet.wait()
        return [x * 10 for x in items]

    b = make(fn, max_batch_size=2, max_wait_s=0, workers=workers)
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(b, [1, 2]), pool.submit(b, [3, 4])]
        if workers == 2:
            assert [c.result(10) for c in calls] == [[10, 20], [30, 40]]
        else:
            with pytest.raises(threading.BrokenBarrierError):
                calls[0].result(10)


def test_workers_do_not_split_a_batch_being_gathered(make):
    """Items trickling in within the wait all join the batch the first worker is gathering; the second
    worker waits its turn instead of starting a batch of its own."""
    rec = Recorder()
    b = make(rec, max_batch_size=8, max_wait_s=2.0, workers=2)
    futures = []
    for i in range(8):
        futures += b.submit([i])
        time.sleep(0.005)
    assert [f.result(10) for f in futures] == [i * 10 for i in range(8)]
    assert rec.batches == [list(range(8))]


def test_while_a_call_runs_the_next_batch_fills_up_past_the_wait(make):
    """The cores are busy with the first call: items arriving one by one, each after max_wait_s, still
    join one batch (until full), instead of starting calls of one."""
    rec = Recorder()
    rec.release.clear()
    b = make(rec, max_batch_size=4, max_wait_s=0.005, workers=2)
    first = b.submit([0])
    assert rec.entered.wait(5)
    rest = []
    for i in range(1, 5):
        rest += b.submit([i])
        time.sleep(0.03)  # six times max_wait_s
    deadline = time.monotonic() + 5
    while len(rec.batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rec.batches == [[0], [1, 2, 3, 4]]
    rec.release.set()
    assert [f.result(5) for f in first + rest] == [0, 10, 20, 30, 40]


def test_when_the_running_call_ends_the_gathered_batch_runs_at_once(make):
    gate = threading.Event()
    calls = []

    def fn(items):
        calls.append(list(items))
        if items == [0]:
            gate.wait(5)
        return [x * 10 for x in items]

    b = make(fn, max_batch_size=8, max_wait_s=0.005, workers=2)
    first = b.submit([0])
    while not calls:
        time.sleep(0.001)
    second = b.submit([1])
    time.sleep(0.05)
    assert calls == [[0]]  # gathering behind the running call, not yet full
    gate.set()
    assert first[0].result(5) == 0 and second[0].result(5) == 10
    assert calls == [[0], [1]]
