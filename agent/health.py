"""What the agent knows about its own health: dependencies up or down, conditions.

One object shared by the loops that observe (publisher, Docker monitor, disk
reporter) and the ones that report (heartbeat, /healthz, sd_notify watchdog).
Outages are remembered until reported, so the first heartbeat after Kafka
comes back says it was gone (``kafka-recovered``), and so for Docker.
"""

from __future__ import annotations

import asyncio
import logging
import time

from agent import metrics

log = logging.getLogger(__name__)

DOCKER_UNREACHABLE = "docker-unreachable"
KAFKA_UNREACHABLE = "kafka-unreachable"
DISK_PRESSURE = "disk-pressure"


class Health:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.docker_up = asyncio.Event()
        self.kafka_ok = True
        self._disk_pressure = False
        metrics.DISK_PRESSURE.set(0)
        self._down_since: dict[str, float] = {}
        self._recovered: list[str] = []
        self.tasks_ok = True

    # -- observers ------------------------------------------------------------

    def docker(self, up: bool, error: str = "") -> None:
        self._flip("docker", up, error)
        if up:
            self.docker_up.set()
        else:
            self.docker_up.clear()
        metrics.DEPENDENCY_UP.labels("docker").set(1 if up else 0)

    def kafka(self, up: bool, error: str = "") -> None:
        self._flip("kafka", up, error)
        self.kafka_ok = up
        metrics.DEPENDENCY_UP.labels("kafka").set(1 if up else 0)

    def _flip(self, name: str, up: bool, error: str) -> None:
        was_down = name in self._down_since
        if not up and not was_down:
            self._down_since[name] = time.monotonic()
            # One message per dependency: shared/logrepeats.py rate-limits by the template.
            log.warning(f"{name} unreachable", extra={"dependency": name, "error": error})  # noqa: G004
        elif up and was_down:
            lasted = time.monotonic() - self._down_since.pop(name)
            self._recovered.append(f"{name}-recovered")
            log.info(f"{name} reachable again", extra={"dependency": name, "outage_s": round(lasted, 1)})  # noqa: G004

    @property
    def disk_pressure(self) -> bool:
        """The fullest measured path is at or above the cleanup high watermark (set by the disk reporter)."""
        return self._disk_pressure

    @disk_pressure.setter
    def disk_pressure(self, pressure: bool) -> None:
        self._disk_pressure = pressure
        metrics.DISK_PRESSURE.set(1 if pressure else 0)

    # -- reporters --------------------------------------------------------------

    def is_down(self, name: str) -> bool:
        """Known to be down (not merely unchecked yet, as at start)."""
        return name in self._down_since

    @property
    def docker_ok(self) -> bool:
        return self.docker_up.is_set()

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def conditions(self) -> list[str]:
        out = []
        if not self.docker_ok:
            out.append(DOCKER_UNREACHABLE)
        if not self.kafka_ok:
            out.append(KAFKA_UNREACHABLE)
        if self.disk_pressure:
            out.append(DISK_PRESSURE)
        return out

    def take_recoveries(self) -> list[str]:
        """Recoveries not reported yet (cleared once a heartbeat carried them)."""
        out, self._recovered = self._recovered, []
        return out

    def snapshot(self) -> dict[str, object]:
        return {
            "status": "ok" if self.docker_ok and self.kafka_ok and self.tasks_ok else "degraded",
            "docker": self.docker_ok,
            "kafka": self.kafka_ok,
            "tasks": self.tasks_ok,
            "conditions": self.conditions() + self._recovered,
            "uptime_s": round(self.uptime(), 1),
        }
