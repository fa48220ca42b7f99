"""The HTTP traffic metrics (controlplane/metrics.py) as Prometheus reads them: a request counts once, in every
latency bucket whose bound it does not exceed (a bound itself included), and the count and sum agree."""

from __future__ import annotations

import prometheus_client
from prometheus_client import parser

from controlplane import metrics


def exposed(traffic: metrics._Traffic) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = prometheus_client.CollectorRegistry()
    registry.register(traffic)
    text = prometheus_client.generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_requests_count_per_route_and_status_and_fall_in_every_bucket_at_or_above_their_time() -> None:
    traffic = metrics._Traffic()
    for seconds in (0.0004, 0.005, 0.0051, 30.0):
        traffic.observe("GET", "/v1/workspaces/{workspace_id}", 200, seconds)
    traffic.observe("POST", "/v1/workspaces", 409, 0.02)
    got = exposed(traffic)
    labels = (("method", "GET"), ("route", "/v1/workspaces/{workspace_id}"), ("status", "200"))

    def bucket(le: str) -> float:
        return got[("a4c_http_request_duration_seconds_bucket", tuple(sorted((*labels, ("le", le)))))]

    assert got[("a4c_http_requests_total", labels)] == 4
    assert bucket("0.001") == 1
    assert bucket("0.0025") == 1
    assert bucket("0.005") == 2, "a request of exactly a bound counts in that bound's bucket (Prometheus' le)"
    assert bucket("0.01") == 3
    assert bucket("10.0") == 3
    assert bucket("+Inf") == 4 == got[("a4c_http_request_duration_seconds_count", labels)]
    assert abs(got[("a4c_http_request_duration_seconds_sum", labels)] - 30.0105) < 1e-9
    assert got[("a4c_http_requests_total", (("method", "POST"), ("route", "/v1/workspaces"), ("status", "409")))] == 1


def test_the_api_counts_into_the_default_registry_that_metrics_renders() -> None:
    before = prometheus_client.REGISTRY.get_sample_value("a4c_http_requests_total", {"method": "GET", "route": "/t", "status": "204"}) or 0
    metrics.observe("GET", "/t", 204, 0.001)
    assert prometheus_client.REGISTRY.get_sample_value("a4c_http_requests_total", {"method": "GET", "route": "/t", "status": "204"}) == before + 1
