"""SearchCoalescer: concurrent single searches share calls, each gets its own hits, options never mix."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from catalog.schema import DEFAULT_INDEX
from search_service.coalescing import SearchCoalescer


class GatedSearch:
    """A search function that records its calls and, while `gate` is clear, blocks them."""

    def __init__(self, fail_on: float | None = None):
        self.calls: list[tuple[int, dict]] = []
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def __call__(self, vectors: np.ndarray, **options) -> list[list[dict]]:
        with self._lock:
            self.calls.append((len(vectors), options))
        self.entered.release()
        assert self.gate.wait(10)
        if self.fail_on is not None and self.fail_on in vectors[:, 0]:
            raise RuntimeError("milvus said no")
        # Each query's "hit" names its own first component, so a mixed-up answer shows.
        return [[{"name": f"q{v[0]:g}", "score": 1.0, "top_k": options.get("top_k")}] for v in vectors]


def vec(i: float) -> np.ndarray:
    return np.array([i, 1.0, 0.0], dtype=np.float32)


def test_a_lone_search_runs_at_once_with_its_options():
    search = GatedSearch()
    search.gate.set()
    co = SearchCoalescer(search, max_in_flight=1)
    assert co.search(vec(7), top_k=3, index=DEFAULT_INDEX, params={"ef": 64}) == [
        {"name": "q7", "score": 1.0, "top_k": 3}]
    assert search.calls == [(1, {"top_k": 3, "index": DEFAULT_INDEX, "params": {"ef": 64}})]


def test_searches_queued_behind_a_busy_call_share_the_next_one_and_each_gets_its_own_hits():
    search = GatedSearch()
    seen = []
    co = SearchCoalescer(search, max_in_flight=1, on_call=seen.append)
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(co.search, vec(0), top_k=10)
        assert search.entered.acquire(timeout=10)  # the first call is running and holds the only slot
        rest = [pool.submit(co.search, vec(i), top_k=10) for i in range(1, 9)]
        deadline = time.monotonic() + 10
        while len(co._queue) < 8 and time.monotonic() < deadline:  # all eight are waiting for the slot
            time.sleep(0.01)
        search.gate.set()
        assert first.result(10)[0]["name"] == "q0"
        assert [f.result(10)[0]["name"] for f in rest] == [f"q{i}" for i in range(1, 9)]
    assert [n for n, _ in search.calls] == [1, 8] and seen == [1, 8]


def test_searches_with_different_options_never_share_a_call():
    search = GatedSearch()
    co = SearchCoalescer(search, max_in_flight=1)
    with ThreadPoolExecutor(7) as pool:
        first = pool.submit(co.search, vec(0), top_k=10)
        assert search.entered.acquire(timeout=10)
        tens = [pool.submit(co.search, vec(i), top_k=10) for i in (1, 2, 3)]
        fives = [pool.submit(co.search, vec(i), top_k=5, filter='meta["a"] == 1') for i in (4, 5, 6)]
        deadline = time.monotonic() + 10
        while len(co._queue) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        search.gate.set()
        first.result(10)
        assert [f.result(10)[0] for f in tens] == [{"name": f"q{i}", "score": 1.0, "top_k": 10} for i in (1, 2, 3)]
        assert [f.result(10)[0] for f in fives] == [{"name": f"q{i}", "score": 1.0, "top_k": 5} for i in (4, 5, 6)]
    assert sorted((n, o.get("top_k")) for n, o in search.calls) == [(1, 10), (3, 5), (3, 10)]


def test_a_failed_call_fails_its_own_searches_only():
    search = GatedSearch(fail_on=2.0)
    co = SearchCoalescer(search, max_in_flight=1)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(co.search, vec(0), top_k=10)
        assert search.entered.acquire(timeout=10)
        failing = [pool.submit(co.search, vec(i), top_k=10) for i in (1, 2)]
        other = pool.submit(co.search, vec(3), top_k=4)
        deadline = time.monotonic() + 10
        while len(co._queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        search.gate.set()
        assert first.result(10)[0]["name"] == "q0"
        for f in failing:
            with pytest.raises(RuntimeError, match="milvus said no"):
                f.result(10)
        assert other.result(10)[0]["name"] == "q3"
    # The slot was given back: the coalescer still serves.
    assert co.search(vec(9), top_k=1)[0]["name"] == "q9"


def test_a_search_returning_the_wrong_number_of_lists_is_an_error_not_a_mix_up():
    co = SearchCoalescer(lambda vectors, **_: [[]] * (len(vectors) + 1))
    with pytest.raises(RuntimeError, match="2 result lists for 1 queries"):
        co.search(vec(1), top_k=1)


def test_max_batch_splits_a_long_queue():
    search = GatedSearch()
    co = SearchCoalescer(search, max_in_flight=1, max_batch=3)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(co.search, vec(0), top_k=10)
        assert search.entered.acquire(timeout=10)
        rest = [pool.submit(co.search, vec(i), top_k=10) for i in range(1, 8)]
        deadline = time.monotonic() + 10
        while len(co._queue) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        search.gate.set()
        assert [f.result(10)[0]["name"] for f in [first, *rest]] == [f"q{i}" for i in range(8)]
    assert [n for n, _ in search.calls] == [1, 3, 3, 1]


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        SearchCoalescer(lambda v, **o: [], max_in_flight=0)


def test_the_leader_always_runs_its_own_search_even_behind_a_full_batch():
    """Whichever waiting thread gets the free slot runs its own request: if it took only the oldest ones,
    its own could be left with nobody to run it."""
    from search_service.coalescing import _Pending

    co = SearchCoalescer(lambda v, **o: [[] for _ in v], max_in_flight=1, max_batch=2)
    queued = [_Pending(vec(i), ("same",)) for i in range(4)]
    co._queue = list(queued)
    batch = co._take(queued[3])
    assert batch == [queued[3], queued[0]] and co._queue == [queued[1], queued[2]]
    assert all(p.taken for p in batch) and not any(p.taken for p in co._queue)


def test_many_threads_many_options_every_search_answered_and_slots_never_exceeded():
    """A storm of searches with three option sets through two slots: every thread gets its own hits (none
    is left waiting: the handover of a slot must wake the right thread), at most two calls run at once."""
    running, most = [0], [0]
    lock = threading.Lock()

    def search(vectors, **options):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.0005)
        with lock:
            running[0] -= 1
        return [[{"name": f"q{v[0]:g}", "top_k": options["top_k"]}] for v in vectors]

    co = SearchCoalescer(search, max_in_flight=2, max_batch=5)

    def ask(i: int) -> bool:
        hits = co.search(vec(i), top_k=3 + i % 3)
        return hits == [{"name": f"q{i}", "top_k": 3 + i % 3}]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, range(3000), timeout=60))
    assert all(answers) and most[0] <= 2
