"""Cron expressions: validation and next fire times, with a real cron parser.

Errors::

    CronError              the expression or time zone is invalid (message says which)

APScheduler's ``CronTrigger.from_crontab`` parses standard 5-field crontab
syntax; time zones come from the IANA database (``zoneinfo``), so DST shifts
are handled by the library, not by us.
"""

from __future__ import annotations

import datetime
import zoneinfo

from apscheduler.triggers import cron as aps_cron


class CronError(ValueError):
    """The cron expression or the time zone is invalid."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def trigger(expression: str, timezone: str) -> aps_cron.CronTrigger:
    try:
        tz = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError("timezone", f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)") from None
    if len(expression.split()) != 5:
        raise CronError("cron", "expected 5 fields: minute hour day-of-month month day-of-week")
    try:
        return aps_cron.CronTrigger.from_crontab(expression, timezone=tz)
    except ValueError as exc:
        raise CronError("cron", f"invalid cron expression: {exc}") from None


def next_runs(expression: str, timezone: str, after: datetime.datetime, count: int = 5) -> list[datetime.datetime]:
    """The next ``count`` fire times strictly after ``after`` (UTC-aware)."""
    trig = trigger(expression, timezone)
    runs: list[datetime.datetime] = []
    previous = None
    now = after + datetime.timedelta(microseconds=1)
    for _ in range(count):
        fire = trig.get_next_fire_time(previous, now)
        if fire is None:
            break
        runs.append(fire.astimezone(datetime.timezone.utc))
        previous = fire
        now = fire + datetime.timedelta(microseconds=1)
    return runs


def next_run(expression: str, timezone: str, after: datetime.datetime) -> datetime.datetime | None:
    runs = next_runs(expression, timezone, after, 1)
    return runs[0] if runs else None
