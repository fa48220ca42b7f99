"""The change feed: ``a4c_changes`` notifications wake the blocking reads of this instance.

Migration 0013's trigger NOTIFYs ``job:<id>:<version>`` or
``workspace:<id>:<version>`` at the commit of every change, whichever
instance (or worker) made it. The instance's one LISTEN connection
(controlplane/db/listen.py, shared with token revocations) hands each to the
:class:`~controlplane.api.watches.Hub`, and tells it when changes may go
unheard (the connection is down) and when they are heard again.
"""

from __future__ import annotations

from controlplane.api import watches
from controlplane.db import listen
from controlplane.domain import watch as domain_watch

CHANNEL = "a4c_changes"


def channel(hub: watches.Hub) -> listen.Channel:
    def notified(payload: str) -> None:
        change = domain_watch.parse_change(payload)
        if change is not None:
            hub.notify(change)

    return listen.Channel(CHANNEL, notified, lost=hub.lost, listening=hub.resume)
