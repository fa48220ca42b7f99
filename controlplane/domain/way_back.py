"""What the owner of a workspace that is not running does to get it running again. Pure: no I/O.

One rule for every message that gives the advice (exec refused, start
refused): a workspace whose create failed before a container existed, or
whose host is down, has nothing to start and must be recreated
(controlplane/services/workspaces.recreate_workspace); one that was
stopped or exited is started; one on its way up is waited for.
"""

from __future__ import annotations

from controlplane.domain.states import ObservedState


def must_recreate(observed: ObservedState, has_container: bool) -> bool:
    """Nothing on a host to start: its host is down, or it failed before it ever got a container."""
    return observed is ObservedState.LOST or (observed is ObservedState.FAILED and not has_container)


def advice(name: str, observed: ObservedState, has_container: bool) -> str:
    """One clause saying what to run, e.g. ``start it first (a4c workspaces start dev)``."""
    if must_recreate(observed, has_container):
        return f"recreate it (a4c workspaces recreate {name})"
    if observed in (ObservedState.PENDING, ObservedState.CREATING):
        return f"wait until it runs (a4c workspaces get {name})"
    if observed in (ObservedState.DELETING, ObservedState.DELETED):
        return "it is being deleted; create another"
    return f"start it first (a4c workspaces start {name})"
