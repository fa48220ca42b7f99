"""The A4C node agent: runs the local Docker daemon for the control plane."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("a4c")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
