"""Benchmark: event-consumer lag under a simulated fleet of 2,000 hosts."""
