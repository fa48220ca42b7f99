"""The A4C control plane: HTTP API, owner of PostgreSQL state, relay, reconciler, search feeder."""
