"""The A4C shared library: what both deployables import.

Nothing in here imports from ``controlplane``, ``agent`` or ``a4c`` (an
import-linter contract run by the test suite keeps it so).
"""
