"""PostgreSQL: models, engine, migrations. The only source of truth (docs/decisions/0005-level-triggered-reconciliation.md)."""
