"""The ``a4c`` command groups, one module each; :mod:`a4c.cli` puts them together."""
