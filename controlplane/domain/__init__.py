"""Pure decisions of the control plane (placement, reconciliation plans, query parsing).

No module here imports an I/O library; an import-linter contract enforces it.
"""
