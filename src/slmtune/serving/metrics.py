"""Prometheus metrics of one server (its own registry, so several apps in one process never mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

ROUTES = ("/", "/healthz", "/metrics", "/v1/models", "/v1/classify", "/v1/chat/completions")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """Requests by route and status, latency histograms, batch sizes, phrases and tokens processed."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: they double the exposition and nobody graphs them
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "slmtune_requests", "HTTP requests answered", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "slmtune_request_duration_seconds",
            "time from request to the end of the response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "slmtune_batch_size", "phrases per model call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.batch_seconds = Histogram(
            "slmtune_batch_duration_seconds", "time of one model call", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.phrases = Counter("slmtune_phrases", "phrases classified", registry=self.registry)
        self.prompt_tokens = Counter("slmtune_prompt_tokens", "prompt tokens of chat requests", registry=self.registry)
        self.completion_tokens = Counter("slmtune_completion_tokens", "tokens generated", registry=self.registry)

    def request(self, path: str, method: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"  # unknown paths never grow the label set
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, phrases: int, seconds: float) -> None:
        self.batch_size.observe(phrases)
        self.batch_seconds.observe(seconds)
        self.phrases.inc(phrases)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
