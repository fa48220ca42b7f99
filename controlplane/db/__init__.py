"""PostgreSQL: models, engine, migrations. The only source of truth (decision 1)."""
