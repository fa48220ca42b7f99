"""The test harness: starts and stops the real components tests run against.

Loaded as pytest plugins from ``tests/conftest.py``; every component starts
lazily, the first time a test asks for its fixture, and is stopped (and
checked gone) at the end of the session.
"""
