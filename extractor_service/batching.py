"""A dynamic batcher in the style of Ray Serve's `@serve.batch`, for threads.

Callers (request threads) submit items and wait on futures; one background thread takes up to
`max_batch_size` queued items, waiting at most `max_wait_s` after the first one for more, and makes ONE
vectorised call `fn(items) -> outputs`. Each caller gets its own output, or the exception its item raised,
or the whole batch's exception when the call failed or returned the wrong number of outputs. The queue is
bounded (`max_queue`), so memory stays bounded under overload: `submit` raises `BatcherOverloaded`.
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
    """Coalesce items submitted from many threads into batched calls of `fn` on one worker thread.

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
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1. Received: {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0. Received: {max_wait_s}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: deque[tuple[Any, Future]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

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
        """Block for the first item, then gather more until full or `max_wait_s` after the first."""
        with self._cond:
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
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
        # Drop items whose callers gave up; mark the rest running so they can no longer be cancelled.
        return [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]

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
        """Stop taking new items; queued items still run; wait for the worker thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
