"""Prometheus metrics (text format at GET /metrics).

Each application gets its own registry, so tests can build many apps in one process. Under gunicorn the
workers' figures are added up: ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start,
which puts prometheus_client in its multiprocess mode (every worker writes its values to files there, and
``/metrics`` reads them all), so any worker answers a scrape with the totals.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# prometheus_client decides this once, when it is first imported; so does the gateway.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests", "Requests answered", ["family", "model", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "gateway_request_seconds",
            "Time to the end of the response (streams: to the last byte)",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "gateway_upstream_retries", "Upstream attempts beyond the first", ["family"], registry=self.registry
        )
        self.rate_limits = Counter(
            "gateway_rate_limit_events", "429s received from the upstream", ["account", "model"], registry=self.registry
        )
        self.active_streams = Gauge("gateway_active_streams", "Streams being relayed now", registry=self.registry,
                                    multiprocess_mode="livesum")
        self.tokens = Counter(
            "gateway_tokens", "Tokens reported by the upstream", ["family", "model", "direction"], registry=self.registry
        )

    def render(self) -> bytes:
        if not MULTIPROCESS:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
