"""Benchmark: API create → running, end to end, against a raw docker SDK run."""
