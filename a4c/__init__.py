"""The ``a4c`` user CLI. Talks only to the control plane's HTTP API."""
