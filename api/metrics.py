"""Prometheus metrics (per process; with several workers, scrape each or use multiprocess mode)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

registry = CollectorRegistry()

REQUESTS = Counter("indexloan_http_requests_total", "HTTP requests by route and status", ["route", "status"],
                   registry=registry)
LATENCY = Histogram("indexloan_http_request_seconds", "HTTP request latency by route", ["route"], registry=registry,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
QUOTES = Counter("indexloan_quotes_total", "Product quotes computed, by product and eligibility",
                 ["product", "eligible"], registry=registry)
