"""Prometheus metrics of jobs search: the sync pipeline and the read path.

The outbox side of the pipeline (age of the oldest unpublished row) is
``a4c_outbox_oldest_unpublished_seconds`` from :mod:`controlplane.relay`.
"""

from __future__ import annotations

import prometheus_client

SYNC_LAG = prometheus_client.Gauge("a4c_search_sync_lag_messages", "Job-sync messages not yet consumed (high watermark - position)", ["partition"])
SYNC_LATENCY = prometheus_client.Histogram(
    "a4c_search_sync_latency_seconds",
    "Job row updated_at (its commit, within a transaction) -> indexed in Elasticsearch",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)
BULK_SIZE = prometheus_client.Histogram(
    "a4c_search_bulk_size_documents", "Documents per bulk request", buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
)
BULK_ITEMS = prometheus_client.Counter(
    "a4c_search_bulk_items_total", "Bulk item results by outcome (indexed, stale = harmless 409, retry, rejected)", ["outcome"]
)
BULK_FAILURES = prometheus_client.Counter("a4c_search_bulk_failures_total", "Bulk requests that failed as a whole (unreachable, timeout, 5xx)")
DEAD_LETTERS = prometheus_client.Counter("a4c_search_dead_letters_total", "Messages sent to the dead-letter topic", ["cause"])
BREAKER = prometheus_client.Enum("a4c_search_breaker", "Circuit breaker in front of Elasticsearch reads", states=["closed", "open", "half_open"])
ANSWERED = prometheus_client.Counter("a4c_search_requests_total", "Searches by the backend that answered", ["backend", "degraded"])
SEARCH_SECONDS = prometheus_client.Histogram(
    "a4c_search_request_seconds",
    "Search latency by the backend that answered",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5),
)
TIMED_OUT = prometheus_client.Counter("a4c_search_timeouts_total", "Searches on PostgreSQL cancelled by search.statement_timeout (answered 503)")
REPAIRED = prometheus_client.Counter(
    "a4c_search_repaired_total", "Jobs the sync worker's periodic check-and-repair rewrote in the index (drift it healed)"
)
UNREPAIRED = prometheus_client.Gauge(
    "a4c_search_drift_unrepaired_days", "Days of jobs still differing between PostgreSQL and the index after the last check-and-repair"
)
