"""Agent benchmarks: idle cost (``python -m bench.agent``) and command latency (``python -m bench.create_direct``)."""
