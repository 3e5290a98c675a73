"""Prometheus metrics of one extractor: requests, images, per-stage latency, batch sizes; served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ExtractorMetrics:
    """The extractor's metrics in their own registry (so tests can build many apps in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("extractor_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.images = Counter("extractor_images", "Images by outcome (ok or an error code)", ["outcome"],
                              registry=r)
        self.stage_seconds = Histogram("extractor_stage_seconds", "Seconds per stage", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.batch_size = Histogram("extractor_batch_size", "Images per model call", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.queue_depth = Gauge("extractor_queue_depth", "Images waiting for the model", registry=r)
        self.ready = Gauge("extractor_ready", "1 once the model is loaded and warmed", registry=r)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one model call (the batcher's on_batch hook)."""
        self.batch_size.observe(size)
        self.stage_seconds.labels("model").observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
