"""A package index that records every request and serves nothing: where test servers' pip is pointed.

Servers get ``/etc/pip.conf`` naming it as their index (``pip_conf``), so a
pip on them that asks any index asks this one, and the test sees it in
``requests``. Their network is the host's, so without it a stray index query
would reach PyPI and succeed unseen.
"""

from __future__ import annotations

import http.server
import threading


class IndexTrap:
    def __init__(self) -> None:
        self.requests: list[str] = []
        trap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                trap.requests.append(self.path)
                self.send_error(404, "an index that serves nothing")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="index-trap", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/simple/"

    def pip_conf(self) -> str:
        return f"[global]\nindex-url = {self.url}\n"

    def start(self) -> IndexTrap:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
