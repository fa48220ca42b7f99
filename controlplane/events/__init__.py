"""Agent events: verification and idempotent application to PostgreSQL."""
