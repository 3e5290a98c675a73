"""A dynamic batcher in the style of Ray Serve's `@serve.batch`, for threads.

Callers (request threads) submit items and wait on futures; a background thread takes up to
`max_batch_size` queued items, waiting at most `max_wait_s` after the first one for more, and makes ONE
vectorised call `fn(items) -> outputs`. With `workers` > 1, that many threads do so, so up to that many
calls run at once (a model on CPU: one call's serial stretches leave cores idle that another fills); while
a call is in progress, the next batch is gathered until it is full or that call ends, not only for
`max_wait_s` (the cores are busy anyway, and larger batches use them better). Each caller gets its own
output, or the exception its item raised, or the whole batch's exception when the call failed or returned
the wrong number of outputs. The queue is bounded (`max_queue`), so memory stays bounded under overload:
`submit` raises `BatcherOverloaded`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


class BatcherOverloaded(RuntimeError):
    """The queue is full; try again later."""


class BatcherClosed(RuntimeError):
    """The batcher has been closed."""


class DynamicBatcher:
    """Coalesce items submitted from many threads into batched calls of `fn` on `workers` threads (`fn`
    must then be safe to call concurrently).

    `fn` receives a list of items and returns a sequence of outputs of the same length; an output that is
    an Exception instance fails only its own item. `on_batch(size, seconds)` is called after each call.
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[Any]],
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 1024,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "batcher",
        workers: int = 1,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1. Received: {max_batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1. Received: {workers}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0. Received: {max_wait_s}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: deque[tuple[Any, Future]] = deque()
        self._cond = threading.Condition()
        self._gathering = threading.Lock()
        self._running = 0  # batches taken and not yet finished (guarded by _cond)
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, items: Sequence[Any]) -> list[Future]:
        """Queue items (kept in order, possibly split across batches); one Future per item."""
        futures = [Future() for _ in items]
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            if len(self._queue) + len(items) > self.max_queue:
                raise BatcherOverloaded(
                    f"{len(self._queue)} images are already waiting (limit {self.max_queue}); retry later"
                )
            self._queue.extend(zip(items, futures))
            self._cond.notify()
        return futures

    def __call__(self, items: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """Submit and wait: outputs in item order; raises the first failed item's exception."""
        futures = self.submit(items)
        try:
            return [f.result(timeout=timeout) for f in futures]
        finally:
            for f in futures:
                f.cancel()  # a timed-out caller's items are skipped if they have not run yet

    @property
    def queued(self) -> int:
        """Items waiting for the model."""
        return len(self._queue)

    def _take_batch(self) -> list[tuple[Any, Future]]:
        """Block for the first item, then gather more until full or `max_wait_s` after the first (while
        another call is in progress: until full or that call ends). One worker gathers at a time (the others
        wait their turn), so workers do not split a batch between them. A batch returned counts as a call in
        progress from here on (the next gatherer must see it at once); `_run_batch` ends the count."""
        with self._gathering, self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed and not self._queue:
                return []
            batch = [self._queue.popleft()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                if self._closed:
                    break
                if self._running:  # another worker's call is in progress: fill up until it ends
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._running += 1
        # Drop items whose callers gave up; mark the rest running so they can no longer be cancelled.
        batch = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
        if not batch:
            self._call_ended()
        return batch

    def _call_ended(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()  # a worker gathering behind this call runs what it has

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                if self._closed:
                    return
                continue
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Any, Future]]) -> None:
        items = [item for item, _ in batch]
        start = time.perf_counter()
        try:
            outputs = list(self.fn(items))
            if len(outputs) != len(items):
                raise RuntimeError(f"batch function returned {len(outputs)} outputs for {len(items)} inputs")
        except BaseException as exc:  # noqa: BLE001 - every caller of this batch gets the exception
            log.exception("batch of %d failed", len(items))
            for _, fut in batch:
                fut.set_exception(exc)
            return
        finally:
            self._call_ended()
            if self.on_batch is not None:
                try:
                    self.on_batch(len(items), time.perf_counter() - start)
                except Exception:  # noqa: BLE001 - a metrics hook must not stop the batcher
                    log.exception("on_batch hook failed")
        for (_, fut), out in zip(batch, outputs):
            if isinstance(out, BaseException):
                fut.set_exception(out)
            else:
                fut.set_result(out)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking new items; queued items still run; wait for the worker threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
