"""Find out whether Docker here can cap a workspace's disk: ``docker info`` and /proc/mounts, decided by agent/domain/disk_limits.py."""

from __future__ import annotations

import asyncio
import logging

from agent import context as context_mod
from agent.domain import disk_limits as rule

log = logging.getLogger(__name__)

PROC_MOUNTS = "/proc/mounts"


def _read_mounts(path: str = PROC_MOUNTS) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


async def capability(ctx: context_mod.Context) -> rule.Decision:
    """What this host's Docker can do (raises docker_client.DockerError when Docker does not answer)."""
    info = await ctx.docker.info()
    mounts = await asyncio.to_thread(_read_mounts)
    return rule.capability(info, rule.mount_of(str(info.get("DockerRootDir") or ctx.settings.docker.data_root), mounts))


async def evaluate(ctx: context_mod.Context) -> rule.Decision:
    """Decide under docker.enforce_disk_limit, keep the decision on ``ctx`` (creates and disk reports read it) and log a change."""
    able = await capability(ctx)
    decision = rule.decide(ctx.settings.docker.enforce_disk_limit, able)
    if decision != ctx.disk_limits:
        log.log(
            logging.INFO if decision.enforced else logging.WARNING,
            "workspace disk limits enforced" if decision.enforced else "workspace disk limits not enforced: disk_gb is a reservation only",
            extra={"reason": decision.reason, "setting": ctx.settings.docker.enforce_disk_limit},
        )
    ctx.disk_limits = decision
    ctx.disk_limits_able = able
    return decision
