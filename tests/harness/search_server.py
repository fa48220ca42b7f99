"""An Elasticsearch-API server for one test run: osmem-server behind the media-type shim.

``url`` is the shim's address, the one the ``elasticsearch`` client uses.
``stop()`` stops the shim, so the URL refuses connections exactly as a stopped
node does; osmem keeps its memory meanwhile, as a real node keeps its disk,
so ``start()`` brings back the same URL with the same documents.
``stop(lose_data=True)`` also stops osmem (start() then serves an empty one).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import osmem_server

from tests.harness import ports
from tests.harness import processes
from tests.harness import run as run_mod

_SHIM = pathlib.Path(__file__).with_name("es_shim.py")


class SearchServerError(RuntimeError):
    """osmem-server or the shim could not be started."""


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP server at ``url`` answers ``GET /`` with 200."""
    try:
        with urllib.request.urlopen(url + "/", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class SearchServer:
    def __init__(self, run: run_mod.Run) -> None:
        self._run = run
        self._dir = run.subdir("search")
        self.port = ports.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend_port = ports.free_port()
        self.backend_url = f"http://127.0.0.1:{self.backend_port}"
        self._osmem: subprocess.Popen | None = None
        self._shim: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._shim is not None and self._shim.poll() is None

    def start(self, timeout: float = 30.0) -> float:
        """Start (or restart) on the same URL and wait until it answers; returns the seconds it took."""
        began = time.monotonic()
        try:
            if self._osmem is None or self._osmem.poll() is not None:
                argv = [
                    osmem_server.resolve_binary(),
                    "--addr", f"127.0.0.1:{self.backend_port}",
                    "--no-ja",  # Japanese analysis costs startup time and no test needs it
                    "--no-stdin-watch",
                    "--parent-pid", str(os.getpid()),  # dies with a crashed test process
                ]
                self._osmem = self._run.track("osmem-server", processes.spawn(argv, self._dir / "osmem.log"))
                _await(self._osmem, self.backend_url, self._dir / "osmem.log", began + timeout)
            if not self.running:
                argv = [sys.executable, str(_SHIM), "--listen", f"127.0.0.1:{self.port}", "--backend", self.backend_url]
                self._shim = self._run.track("es_shim", processes.spawn(argv, self._dir / "shim.log"))
                _await(self._shim, self.url, self._dir / "shim.log", began + timeout)
        except BaseException:
            self.close()
            raise
        return time.monotonic() - began

    def stop(self, *, lose_data: bool = False) -> None:
        if self._shim is not None:
            processes.stop(self._shim, grace=5.0)
        if lose_data or self._shim is None:
            self._stop_backend()

    def close(self) -> None:
        self.stop(lose_data=True)

    def _stop_backend(self) -> None:
        if self._osmem is not None:
            processes.stop(self._osmem, grace=5.0)


def _await(process: subprocess.Popen, url: str, log: pathlib.Path, deadline: float) -> None:
    while not answers(url):
        if process.poll() is not None:
            raise SearchServerError(f"{process.args[0]} exited with {process.returncode}:\n{processes.log_tail(log)}")
        if time.monotonic() > deadline:
            raise SearchServerError(f"{url} did not answer in time:\n{processes.log_tail(log)}")
        time.sleep(0.05)
