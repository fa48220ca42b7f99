"""Request and response bodies of the HTTP API (pydantic), one module per resource.

These models are the contract: views validate with them and render with them,
and the OpenAPI document is generated from them, so neither can drift.
"""
