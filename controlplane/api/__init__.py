"""The control plane's HTTP API (aiohttp): app factory, middleware, views, schemas, OpenAPI."""
