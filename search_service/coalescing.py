"""`SearchCoalescer`: concurrent single-query searches become one Milvus search of several queries.

Under load, most of a small search's cost is per call, not per query: the gRPC round trip, pymilvus
building the request and parsing the result, Milvus's proxy and scheduler. A search of 8 vectors costs
far less than 8 searches of one. So request threads that search with the same options join one call.

There is no batching thread and no waiting window: a request that finds a free call slot (at most
`max_in_flight` calls run at once) searches at once, with every queued request of the same options, so an
idle service adds no latency. Only while every slot is busy do requests queue, and the next free slot
takes them all together: batches grow with load by themselves. Requests with different options (top_k,
offset, filter, min_score, ...) never share a call.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


class _Pending:
    """One request's query vector, waiting for its hits, its error, or its turn to lead a call."""

    __slots__ = ("vector", "key", "taken", "lead", "hits", "error", "wake")

    def __init__(self, vector: np.ndarray, key: Hashable):
        self.vector = vector
        self.key = key
        self.taken = False  # in a call (its own or another's)
        self.lead: list[_Pending] | None = None  # the batch this request's thread is to run
        self.hits: list[dict] | None = None
        self.error: BaseException | None = None
        self.wake = threading.Event()  # set once: to lead a call, or when its call is done


class SearchCoalescer:
    """Run `search(vectors, **options) -> hits per vector` for many threads, several queries per call.

    `search` must accept a 2-d array of query vectors and return one list of hits per row, in order (as
    `catalog.Catalog.search` does). A failed call raises its exception in every request it served.
    `on_call(size)` is told each call's number of queries (metrics).

    Each waiting thread sleeps on an event of its own and is woken once: when its call is done, or when a
    finishing call hands it the free slot to lead the next one (with every queued request of its options).
    Under load a condition variable's notify_all would wake every waiting thread at each call's end, most
    only to sleep again.
    """

    def __init__(self, search: Callable[..., list[list[dict]]], max_in_flight: int = 4, max_batch: int = 64,
                 on_call: Callable[[int], None] | None = None):
        if max_in_flight < 1 or max_batch < 1:
            raise ValueError(f"max_in_flight and max_batch must be >= 1, not {max_in_flight} and {max_batch}")
        self._search = search
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._on_call = on_call
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._in_flight = 0

    def search(self, vector: np.ndarray, **options: Any) -> list[dict]:
        """The hits of one query vector; `options` are passed to the search call (they must be hashable
        or dicts/lists of such: requests with equal options share a call)."""
        item = _Pending(np.asarray(vector, dtype=np.float32).reshape(-1), _freeze(options))
        with self._lock:
            self._queue.append(item)
            if self._in_flight < self.max_in_flight:
                self._in_flight += 1
                item.lead = self._take(item)
        if item.lead is None:
            item.wake.wait()  # until our call is done, or we are handed a slot to lead one
        if item.lead is not None:  # the batch starts with our own request: its hits are set when it returns
            batch, item.lead = item.lead, None
            self._run(batch, options)
        if item.error is not None:
            raise item.error
        return item.hits  # type: ignore[return-value]

    def _take(self, item: _Pending) -> list[_Pending]:
        """`item` and up to max_batch - 1 other queued requests with its options, oldest first, all marked
        taken (lock held). The leader's own request always goes: nobody else may be left to run it."""
        batch, rest = [item], []
        for p in self._queue:
            if p is not item:
                (batch if p.key == item.key and len(batch) < self.max_batch else rest).append(p)
        for p in batch:
            p.taken = True
        self._queue = rest
        return batch

    def _run(self, batch: list[_Pending], options: dict[str, Any]) -> None:
        try:
            hits = self._search(np.stack([p.vector for p in batch]), **options)
            if len(hits) != len(batch):
                raise RuntimeError(f"the search returned {len(hits)} result lists for {len(batch)} queries")
            for p, h in zip(batch, hits):
                p.hits = h
        except BaseException as exc:  # noqa: BLE001 - every request of the call gets the exception
            for p in batch:
                p.error = exc
        finally:
            with self._lock:
                # The slot passes to the oldest queued request, whose thread leads the next call.
                nxt = self._queue[0] if self._queue else None
                if nxt is None:
                    self._in_flight -= 1
                else:
                    nxt.lead = self._take(nxt)
            for p in batch:
                if p is not batch[0]:
                    p.wake.set()
            if nxt is not None:
                nxt.wake.set()
            if self._on_call is not None:
                self._on_call(len(batch))


def _freeze(value: Any) -> Hashable:
    """A hashable stand-in for options made of dicts, lists, dataclasses and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # its fields, not a deep copy (asdict)
        return (type(value).__name__, tuple((f.name, _freeze(getattr(value, f.name)))
                                            for f in dataclasses.fields(value)))
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
