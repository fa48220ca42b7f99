"""Benchmark: GET one workspace under concurrent load, against a bare aiohttp hello-world in the same run.

Run ``python -m bench.api_read`` (PostgreSQL: ``--admin-url``, else 127.0.0.1:5432, else an embedded server started here).
Both servers are started the same way (one process each, on a free loopback
port) and loaded the same way (``wrk`` when installed, else an aiohttp client
loop); the report is the throughput ratio and each side's p50/p99 latency.
"""
