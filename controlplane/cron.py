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
    minute, hour, day, month, day_of_week = expression.split()
    try:
        return aps_cron.CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(day_of_week), timezone=tz
        )
    except ValueError as exc:
        raise CronError("cron", f"invalid cron expression: {exc}") from None


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekdays(field: str) -> str:
    """Crontab day-of-week numbers (0 or 7 = Sunday) as names APScheduler 3 reads correctly.

    ``from_crontab`` passes numbers through, and APScheduler 3 counts 0 as
    Monday, so ``1-5`` would mean Tuesday to Saturday (agronholm/apscheduler
    #286, fixed only in 4.x). Numeric parts are expanded to day names; parts
    already written with names are left alone.
    """
    out: list[str] = []
    for part in field.split(","):
        spec, _, step_text = part.partition("/")
        if not step_text.isdigit() and step_text:
            out.append(part)
            continue
        step = int(step_text) if step_text else 1
        if spec == "*":
            low, high = 0, 6
        elif spec.isdigit():
            low = high = int(spec)
            if step_text:
                high = 6
        elif "-" in spec and all(x.isdigit() for x in spec.split("-", 1)):
            low, high = (int(x) for x in spec.split("-", 1))
        else:
            out.append(part)
            continue
        if spec == "*" and not step_text:
            out.append("*")
            continue
        if not (0 <= low <= 7 and 0 <= high <= 7 and low <= high and step > 0):
            raise CronError("cron", f"invalid day of week {part!r}: expected 0-7 (0 or 7 = Sunday) or mon-sun")
        out.extend(_DAY_NAMES[n % 7] for n in range(low, high + 1, step))
    return ",".join(dict.fromkeys(out))


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
