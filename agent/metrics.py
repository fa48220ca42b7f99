"""Prometheus metrics and the local ``/metrics`` + ``/healthz`` endpoint.

The endpoint is a tiny WSGI app on the standard library's server in one
daemon thread: it must answer even when the event loop is busy or stuck,
which is exactly when an operator looks at it. ``/healthz`` answers 200 when
Docker and Kafka are reachable and every root task runs, else 503, with the
details as JSON either way.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import typing
import wsgiref.simple_server

import prometheus_client

log = logging.getLogger(__name__)

REGISTRY = prometheus_client.CollectorRegistry(auto_describe=True)

COMMANDS = prometheus_client.Counter("a4c_agent_commands_total", "Commands handled, by kind and outcome.", ["kind", "outcome"], registry=REGISTRY)
REJECTED = prometheus_client.Counter(
    "a4c_agent_commands_rejected_total", "Commands refused before running, by reason.", ["reason"], registry=REGISTRY
)
COMMAND_SECONDS = prometheus_client.Histogram(
    "a4c_agent_command_seconds",
    "Time from taking a command to its result.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
IN_FLIGHT = prometheus_client.Gauge("a4c_agent_commands_in_flight", "Commands being handled.", registry=REGISTRY)
EVENTS = prometheus_client.Counter("a4c_agent_events_published_total", "Events acknowledged by Kafka.", ["kind"], registry=REGISTRY)
EVENTS_DROPPED = prometheus_client.Counter("a4c_agent_events_dropped_total", "Events dropped because the outgoing queue was full.", registry=REGISTRY)
EVENT_QUEUE = prometheus_client.Gauge("a4c_agent_event_queue", "Events waiting to be published.", registry=REGISTRY)
DEPENDENCY_UP = prometheus_client.Gauge("a4c_agent_dependency_up", "1 when reachable.", ["dependency"], registry=REGISTRY)
CLEANUP_REMOVED = prometheus_client.Counter("a4c_agent_cleanup_removed_total", "Objects removed by cleanup.", ["what"], registry=REGISTRY)
CLEANUP_RECLAIMED = prometheus_client.Counter(
    "a4c_agent_cleanup_reclaimed_bytes_total", "Bytes Docker reported reclaimed by cleanup.", registry=REGISTRY
)
DISK_PERCENT = prometheus_client.Gauge("a4c_agent_disk_used_percent", "Disk use of a measured path.", ["path"], registry=REGISTRY)
DISK_PRESSURE = prometheus_client.Gauge(
    "a4c_agent_disk_pressure", "1 while the fullest measured path is at or above cleanup.high_watermark.", registry=REGISTRY
)
BUILDS_RUNNING = prometheus_client.Gauge("a4c_agent_builds_running", "Image builds running now.", registry=REGISTRY)


class Server:
    """``/metrics`` and ``/healthz`` on a loopback port, served from a thread."""

    def __init__(self, host: str, port: int, health: typing.Callable[[], dict[str, object]]) -> None:
        self._health = health
        self._server = wsgiref.simple_server.make_server(host, port, self._app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self.host = host
        # One request at a time, each waited for with no timeout: an idle agent's thread sleeps until a
        # scrape comes (serve_forever polls its stop flag, 10 times a second at the 0.1 s that kept a stop
        # quick: ~0.05 % of a core, a fifth of what an idle agent spends). stop() wakes it with a connection.
        self._server.timeout = None
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics endpoint listening", extra={"url": f"http://{self.host}:{self.port}/metrics"})

    def _serve(self) -> None:
        while not self._stopping:
            self._server.handle_request()

    def stop(self) -> None:
        self._stopping = True
        if self._thread.is_alive():
            address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
            try:
                # An empty connection: the handler reads no request line and closes; the loop sees the flag.
                with socket.create_connection((address, self.port), timeout=1.0):
                    pass
            except OSError:
                pass
            self._thread.join(timeout=5.0)
        self._server.server_close()

    def _app(self, environ: dict, start_response: typing.Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = prometheus_client.generate_latest(REGISTRY)
            start_response("200 OK", [("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/healthz":
            snap = self._health()
            status = "200 OK" if snap.get("status") == "ok" else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(snap).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: typing.Any) -> None:  # noqa: A002 - stdlib signature
        """Scrapes are not worth a log line each."""
