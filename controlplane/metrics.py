"""Prometheus metrics of the control plane: HTTP traffic and domain gauges.

Request counts and latency histograms are labelled by route *template*
(``/v1/workspaces/{workspace_id}``, never the concrete path, so cardinality is
bounded), method and status. Domain gauges (hosts by status, unfinished jobs
by status, workspaces by state) are read from PostgreSQL when ``/metrics`` is scraped, so
every instance reports the same fleet-wide numbers and none goes stale.
Everything lives in the default registry, alongside the relay's and the
consumers' metrics, and ``/metrics`` renders it all.
"""

from __future__ import annotations

import bisect
import hmac
import itertools
import pathlib
import typing

import prometheus_client
import sqlalchemy as sa
from prometheus_client import metrics_core
from prometheus_client import utils as prometheus_utils
from sqlalchemy.ext import asyncio as sa_asyncio

from controlplane.db import models
from controlplane.domain import states

# The request-latency histogram's bounds, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HOSTS = prometheus_client.Gauge("a4c_hosts", "Hosts by status (cordoned counted apart)", ["status"])
JOBS = prometheus_client.Gauge("a4c_jobs_live", "Unfinished jobs by status", ["status"])
WORKSPACES = prometheus_client.Gauge("a4c_workspaces", "Live workspaces by observed state", ["state"])
# The reconciler's deadline sweep retries or fails a job within a pass of its deadline, so a job that stays
# past it means the sweep is not running (monitoring/prometheus/rules/a4c.rules.yml alerts on it).
JOBS_LATE = prometheus_client.Gauge("a4c_jobs_past_deadline", "Unfinished jobs past their deadline")
JOBS_LATE_SECONDS = prometheus_client.Gauge(
    "a4c_jobs_past_deadline_max_seconds", "How long the unfinished job furthest past its deadline has been past it (0: none)"
)

# A workspace a disk report shows over its disk_gb when the report before did not (controlplane/events/apply.py):
# counted once per crossing; the rule WorkspaceOverDiskReservation alerts on it.
DISK_OVERRUNS = prometheus_client.Counter(
    "a4c_workspace_disk_overruns_total", "Workspaces newly found using more disk than they reserved (once per crossing)"
)

_HOSTS = sa.text("SELECT CASE WHEN status = 'active' AND cordoned THEN 'cordoned' ELSE status::text END, count(*) FROM hosts GROUP BY 1")
# Only unfinished jobs: they are few and the jobs_live partial index covers
# them; counting the ever-growing finished ones on every scrape would not scale.
LIVE_JOB_STATUSES = tuple(s.value for s in states.JobStatus if s in states.LIVE_JOBS)
_JOBS = sa.text("SELECT status::text, count(*) FROM jobs WHERE status IN ('queued', 'pending', 'dispatched', 'running') GROUP BY 1")
_JOBS_LATE = sa.text(
    "SELECT count(*), coalesce(max(extract(epoch FROM now() - deadline_at)), 0) FROM jobs"
    " WHERE status IN ('queued', 'pending', 'dispatched', 'running') AND deadline_at < now()"
)
_WORKSPACES = sa.text("SELECT observed_state::text, count(*) FROM workspaces WHERE deleted_at IS NULL GROUP BY 1")


class _Traffic(prometheus_client.registry.Collector):
    """``a4c_http_requests_total`` and ``a4c_http_request_duration_seconds``, kept as plain numbers.

    prometheus_client's Counter and Histogram take a lock per increment, three per request (the count, the
    bucket, the sum) and a loop over the bounds; the API answers on its event loop's one thread, where the
    lock buys nothing, so a request here costs a dict hit and a bisect (docs/benchmarks.md, ``api_read``).
    Routes are templates and statuses few, so the series stay few.
    """

    def __init__(self) -> None:
        # (method, route, status) -> requests per bucket (the last one +Inf), then the seconds' sum.
        self._series: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        series[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bound >= seconds, as Prometheus' le
        series[-1] += seconds

    def collect(self) -> typing.Iterator[prometheus_client.Metric]:
        labels = ["method", "route", "status"]
        requests = metrics_core.CounterMetricFamily("a4c_http_requests", "HTTP requests answered", labels=labels)
        latency = metrics_core.HistogramMetricFamily("a4c_http_request_duration_seconds", "Time to answer an HTTP request", labels=labels)
        bounds = [*map(prometheus_utils.floatToGoString, LATENCY_BUCKETS), "+Inf"]
        for (method, route, status), series in list(self._series.items()):
            values = [method, route, str(status)]
            cumulative = list(itertools.accumulate(series[:-1]))
            requests.add_metric(values, cumulative[-1])
            latency.add_metric(values, list(zip(bounds, cumulative, strict=True)), series[-1])
        yield requests
        yield latency


_TRAFFIC = _Traffic()
prometheus_client.REGISTRY.register(_TRAFFIC)
observe = _TRAFFIC.observe


async def refresh_domain(session: sa_asyncio.AsyncSession) -> None:
    """Set the domain gauges from the database (every label present, zero when empty)."""
    hosts: dict[str, int] = dict((await session.execute(_HOSTS)).all())
    for status in [s.value for s in models.HostStatus] + ["cordoned"]:
        HOSTS.labels(status).set(hosts.get(status, 0))
    jobs: dict[str, int] = dict((await session.execute(_JOBS)).all())
    for status in LIVE_JOB_STATUSES:
        JOBS.labels(status).set(jobs.get(status, 0))
    late, late_seconds = (await session.execute(_JOBS_LATE)).one()
    JOBS_LATE.set(late)
    JOBS_LATE_SECONDS.set(float(late_seconds))
    workspaces: dict[str, int] = dict((await session.execute(_WORKSPACES)).all())
    for state in models.ObservedState:
        WORKSPACES.labels(state.value).set(workspaces.get(state.value, 0))


def check_token(authorization: str, token_file: str | None) -> tuple[int, str] | None:
    """None if a scrape with this Authorization header may read /metrics, else (status, reason).

    Without ``http.metrics_token_file`` anyone may; with it, only a bearer of
    the file's token (compared in constant time). One rule for the API's
    /metrics and the sync worker's (controlplane/search/sync_listener.py).
    """
    if not token_file:
        return None
    try:
        expected = pathlib.Path(token_file).read_text().strip()
    except OSError as exc:
        return 503, f"http.metrics_token_file cannot be read: {exc.strerror}"
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not expected or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return 401, "/metrics needs the metrics token (http.metrics_token_file) as a bearer token"
    return None


def render() -> tuple[bytes, str]:
    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST
