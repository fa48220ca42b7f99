"""Benchmark: the API under overload answers 2xx/401/429/503 (Retry-After on every 429/503), never another 5xx; bounded RSS; quick recovery.

Run ``python -m bench.overload`` (needs ``wrk``; PostgreSQL: ``--admin-url``, else 127.0.0.1:5432, else an embedded server started here).
"""
