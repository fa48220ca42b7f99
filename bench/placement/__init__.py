"""Benchmark: placement (findBestHost) with 2,000 hosts in PostgreSQL.

Run ``python -m bench.placement``. Each measured placement is a whole
``create_workspace`` transaction: take the placement lock, snapshot every host
with its allocation, decide, insert workspace + job + outbox command, commit.
Reports the median and p99 per placement, sequential placements per second,
and the throughput with several concurrent placers (serialised by the lock).
"""
