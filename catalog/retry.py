"""Bounded retries of Milvus calls while the server comes back (tenacity), shared by every caller.

What is retried: `MilvusUnavailable` (unreachable, restarting, timed out), `NotLoaded` (a restarted server
reloads collections in the background) and `CallFailed` errors the server did not call the caller's input
(a restarting Milvus 2.3 answers some calls with errors of its own for a few seconds). Never retried: model
or dimension mismatches and input errors. Backoff doubles from 0.5 s up to 5 s, for at most `seconds`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from catalog.errors import CallFailed, MilvusUnavailable, NotLoaded

log = logging.getLogger(__name__)
T = TypeVar("T")


def retryable(exc: BaseException) -> bool:
    """Whether a failed Milvus call is worth trying again."""
    if isinstance(exc, (MilvusUnavailable, NotLoaded)):
        return True
    return isinstance(exc, CallFailed) and exc.retriable


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("Milvus call failed (%s); retrying in %.1f s", str(exc).splitlines()[0] if exc else "?", wait)


def with_retry(fn: Callable[[], T], seconds: float) -> T:
    """Call `fn`, retrying retryable catalogue errors with backoff for up to `seconds` (0: one try)."""
    if seconds <= 0:
        return fn()
    retrying = Retrying(retry=retry_if_exception(retryable), stop=stop_after_delay(seconds),
                        wait=wait_exponential(multiplier=0.5, min=0.5, max=5.0), reraise=True,
                        before_sleep=_log_retry)
    return retrying(fn)
