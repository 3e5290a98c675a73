"""Milvus failures become typed errors by code (never by message text), and retries are bounded."""

from __future__ import annotations

import time

import grpc
import pytest
from pymilvus.exceptions import ConnectError, DescribeCollectionException, MilvusException

from catalog import errors as E
from catalog.retry import retryable, with_retry


class _RpcError(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection refused"


@pytest.mark.parametrize("exc, kind", [
    (MilvusException(2, "Fail connecting to server on 127.0.0.1:9"), E.MilvusUnavailable),
    (ConnectError(message="no channel"), E.MilvusUnavailable),
    (_RpcError(), E.MilvusUnavailable),
    (MilvusException(grpc.StatusCode.DEADLINE_EXCEEDED, "Retry timeout: 10s"), E.MilvusUnavailable),
    (MilvusException(1, "service not ready", retriable=True), E.MilvusUnavailable),
    (MilvusException(101, "failed to search: collection not loaded[collection=4]"), E.NotLoaded),
    (MilvusException(103, "collection not fully loaded"), E.NotLoaded),
    (DescribeCollectionException(100, "can't find collection"), E.CallFailed),
    (MilvusException(65535, "cannot parse expression: name ==== 1", is_input_error=True), E.CallFailed),
    (MilvusException(1, "Unexpected error, message=<boom>"), E.CallFailed),
    (ValueError("bad"), E.CallFailed),
])
def test_classify_by_type_and_code(exc, kind):
    err = E.classify(exc, "search", "http://m:19530")
    assert type(err) is kind
    assert err.call == "search" and err.detail
    if kind is E.MilvusUnavailable:
        assert "cannot reach Milvus at http://m:19530" in str(err)


def test_the_classification_does_not_read_messages():
    """The same words under another code mean something else: only the code counts."""
    assert type(E.classify(MilvusException(65535, "collection not loaded"), "query")) is E.CallFailed
    assert type(E.classify(MilvusException(101, "whatever the text"), "query")) is E.NotLoaded


def test_input_errors_and_missing_collections_are_not_retried():
    assert not retryable(E.classify(MilvusException(65535, "bad expr", is_input_error=True), "query"))
    assert not retryable(E.classify(DescribeCollectionException(100, "no such"), "describe_collection"))
    assert retryable(E.classify(MilvusException(65535, "channel not available"), "upsert"))
    assert not retryable(E.FingerprintMismatch("c", "a", "b"))
    assert not retryable(E.DimensionMismatch("c", 512, 1280))


def test_go_stack_traces_are_cut_from_details():
    err = E.classify(MilvusException(65535, "node offline stack trace: /go/src/a.go:12 ..."), "flush")
    assert err.detail == "node offline"


def test_with_retry_retries_transient_failures_then_succeeds():
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise E.MilvusUnavailable("down", "upsert")
        return "ok"

    assert with_retry(flaky, seconds=10) == "ok" and len(calls) == 3
    assert calls[1] - calls[0] >= 0.4  # backoff, not a busy loop


def test_with_retry_is_bounded_and_raises_the_last_error():
    calls = []

    def down():
        calls.append(1)
        raise E.MilvusUnavailable("still down", "query")

    with pytest.raises(E.MilvusUnavailable, match="still down"):
        with_retry(down, seconds=1.2)
    assert 2 <= len(calls) <= 4  # retried with backoff, then gave up


def test_with_retry_does_not_retry_what_cannot_improve():
    calls = []

    def mismatch():
        calls.append(1)
        raise E.FingerprintMismatch("c", "vgg16-a", "efficientnet-lite0-b")

    with pytest.raises(E.FingerprintMismatch):
        with_retry(mismatch, seconds=30)
    assert len(calls) == 1
    with pytest.raises(E.MilvusUnavailable):  # seconds=0: exactly one try
        with_retry(lambda: (_ for _ in ()).throw(E.MilvusUnavailable("x", "y")), seconds=0)
