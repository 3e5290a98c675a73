"""Prometheus metrics: request counts and per-stage latency histograms, one registry per app.

`python -m search_service` runs several gunicorn worker processes; each counts its own requests, so it
starts them in prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set before any worker
imports prometheus_client), and /metrics sums every worker's files. An app built on its own (tests, one
process) keeps its counts in memory, in a registry of its own, so tests can build many apps in one process.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

# Seconds; fine-grained at the low end where Milvus and the service's own overhead live.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The service's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "search_http_requests", "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.request_seconds = Histogram(
            "search_http_request_seconds", "HTTP request latency by endpoint",
            ["endpoint"], buckets=_BUCKETS, registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "search_stage_seconds", "Search latency per stage (extract, search, total)",
            ["stage"], buckets=_BUCKETS, registry=self.registry,
        )
        self.results = Histogram(
            "search_results_returned", "Results per search", buckets=(0, 1, 5, 10, 20, 50, 100),
            registry=self.registry,
        )
        self.queries_per_call = Histogram(
            "search_milvus_call_queries", "Queries per Milvus search call (concurrent requests share calls)",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry,
        )

    def observe_stages(self, took_ms: dict[str, float]) -> None:
        """Record one search's stage timings (milliseconds)."""
        for stage, ms in took_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def render(self) -> Response:
        """The Prometheus text exposition."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # every worker's counts, summed
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)

    def install(self, app: Flask) -> None:
        """Count and time every request by its route (not its raw path, which would explode the labels)."""

        @app.before_request
        def _start_timer() -> None:
            g.request_started = time.perf_counter()

        @app.after_request
        def _count(resp):
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            self.requests.labels(endpoint, request.method, str(resp.status_code)).inc()
            started = g.get("request_started")
            if started is not None:
                self.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
            return resp
