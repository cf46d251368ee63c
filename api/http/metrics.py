"""Prometheus metrics. One worker: a per-process registry. Several workers (`indexloan serve --workers N`
sets PROMETHEUS_MULTIPROC_DIR to a fresh directory before they start): each process writes its values
to files there and `/metrics` adds them up across the workers (prometheus_client multiprocess mode)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

registry = CollectorRegistry()

REQUESTS = Counter("indexloan_http_requests_total", "HTTP requests by route and status", ["route", "status"],
                   registry=registry)
LATENCY = Histogram("indexloan_http_request_seconds", "HTTP request latency by route", ["route"], registry=registry,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
QUOTES = Counter("indexloan_quotes_total", "Product quotes computed, by product and eligibility",
                 ["product", "eligible"], registry=registry)


def exposition() -> bytes:
    """The text exposition format: this process's metrics, or all workers' when in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        combined = CollectorRegistry()
        MultiProcessCollector(combined)
        return generate_latest(combined)
    return generate_latest(registry)
