"""The A4C node agent: runs the local Docker daemon for the control plane."""
