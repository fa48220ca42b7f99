"""Benchmark: another user's /v1/me while maximal searches run on the PostgreSQL fallback, and the API's RSS across distinct maximal searches.

Run ``python -m bench.search_budget`` (PostgreSQL: ``--admin-url``, else 127.0.0.1:5432, else an embedded server started here).
"""
