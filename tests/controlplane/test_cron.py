"""Cron expressions fire when Vixie cron would: the day OR rule, names, 0/7 Sunday, macros, DST in the schedule's zone."""

from __future__ import annotations

import datetime
import re
import zoneinfo

import hypothesis
import pytest
from hypothesis import strategies as st

from controlplane import cron

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# Thursday 1 January 2026, midnight UTC.
START = datetime.datetime(2026, 1, 1, tzinfo=UTC)


def at(text: str, tz: datetime.tzinfo = UTC) -> datetime.datetime:
    """``2026-01-05 03:00`` read in ``tz``, as UTC (fold 0 for a repeated time)."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(UTC)


def utc(*texts: str) -> list[datetime.datetime]:
    return [at(t) for t in texts]


NEXT_RUNS = [
    pytest.param(
        "0 3 1 * 1",
        8,
        utc(
            "2026-01-01 03:00",
            "2026-01-05 03:00",
            "2026-01-12 03:00",
            "2026-01-19 03:00",
            "2026-01-26 03:00",
            "2026-02-01 03:00",
            "2026-02-02 03:00",
            "2026-02-09 03:00",
        ),
        id="both day fields restricted: every 1st OR every Monday",
    ),
    pytest.param(
        "0 3 */2 * 1",
        4,
        utc("2026-01-05 03:00", "2026-01-19 03:00", "2026-02-09 03:00", "2026-02-23 03:00"),
        id="a day field starting with * is not restricted: odd days AND Mondays",
    ),
    pytest.param("0 3 1-31 * 1", 3, utc("2026-01-01 03:00", "2026-01-02 03:00", "2026-01-03 03:00"), id="1-31 OR Monday is every day"),
    pytest.param("0 0 30 2 1", 2, utc("2026-02-02 00:00", "2026-02-09 00:00"), id="an impossible day still ORs with the weekday"),
    pytest.param(
        "0 3 * * 1-5",
        6,
        utc("2026-01-01 03:00", "2026-01-02 03:00", "2026-01-05 03:00", "2026-01-06 03:00", "2026-01-07 03:00", "2026-01-08 03:00"),
        id="weekdays 1-5 are Monday to Friday",
    ),
    pytest.param("0 3 * * mon-fri", 3, utc("2026-01-01 03:00", "2026-01-02 03:00", "2026-01-05 03:00"), id="day names"),
    pytest.param("0 3 * * Sat,SUN", 3, utc("2026-01-03 03:00", "2026-01-04 03:00", "2026-01-10 03:00"), id="names in any case"),
    pytest.param("0 0 1 jan-mar *", 4, utc("2026-02-01 00:00", "2026-03-01 00:00", "2027-01-01 00:00", "2027-02-01 00:00"), id="month names"),
    pytest.param(
        "*/15 * * * *",
        5,
        utc("2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 00:45", "2026-01-01 01:00", "2026-01-01 01:15"),
        id="steps",
    ),
    pytest.param("5/20 9-10 * * *", 4, utc("2026-01-01 09:05", "2026-01-01 09:25", "2026-01-01 09:45", "2026-01-01 10:05"), id="N/step from N"),
    pytest.param("0 9-17/4 * * *", 3, utc("2026-01-01 09:00", "2026-01-01 13:00", "2026-01-01 17:00"), id="stepped range"),
    pytest.param("0 0 * * 0", 2, utc("2026-01-04 00:00", "2026-01-11 00:00"), id="0 is Sunday"),
    pytest.param("0 0 * * 7", 2, utc("2026-01-04 00:00", "2026-01-11 00:00"), id="7 is Sunday"),
    pytest.param("0 0 * * 7-7", 2, utc("2026-01-04 00:00", "2026-01-11 00:00"), id="7-7 is Sunday (croniter alone reads every day)"),
    pytest.param("0 0 * * 5-7", 3, utc("2026-01-02 00:00", "2026-01-03 00:00", "2026-01-04 00:00"), id="a range ending at 7"),
    pytest.param("@yearly", 2, utc("2027-01-01 00:00", "2028-01-01 00:00"), id="@yearly"),
    pytest.param("@annually", 1, utc("2027-01-01 00:00"), id="@annually"),
    pytest.param("@monthly", 2, utc("2026-02-01 00:00", "2026-03-01 00:00"), id="@monthly"),
    pytest.param("@weekly", 2, utc("2026-01-04 00:00", "2026-01-11 00:00"), id="@weekly: Sundays"),
    pytest.param("@daily", 2, utc("2026-01-02 00:00", "2026-01-03 00:00"), id="@daily"),
    pytest.param("@midnight", 1, utc("2026-01-02 00:00"), id="@midnight"),
    pytest.param("@hourly", 2, utc("2026-01-01 01:00", "2026-01-01 02:00"), id="@hourly"),
    pytest.param(" 0  3\t* * * ", 1, utc("2026-01-01 03:00"), id="spaces and tabs"),
    pytest.param("0 0 29 2 *", 2, utc("2028-02-29 00:00", "2032-02-29 00:00"), id="leap days"),
    pytest.param("0 0 30 2 *", 5, [], id="never fires"),
]


@pytest.mark.parametrize(("expression", "count", "expected"), NEXT_RUNS)
def test_next_fire_times(expression: str, count: int, expected: list[datetime.datetime]) -> None:
    assert cron.next_runs(expression, "UTC", START, count) == expected


def test_fire_times_are_strictly_after_the_given_instant() -> None:
    on_a_slot = datetime.datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert cron.next_run("* * * * *", "UTC", on_a_slot) == on_a_slot + datetime.timedelta(minutes=1)
    assert cron.next_run("* * * * *", "UTC", on_a_slot - datetime.timedelta(microseconds=1)) == on_a_slot
    assert cron.next_run("* * * * *", "UTC", on_a_slot + datetime.timedelta(microseconds=1)) == on_a_slot + datetime.timedelta(minutes=1)


def test_times_are_read_in_the_schedules_zone() -> None:
    assert cron.next_runs("0 3 * * *", "Europe/Berlin", START, 2) == [at("2026-01-01 03:00", BERLIN), at("2026-01-02 03:00", BERLIN)]
    assert cron.next_run("0 3 * * *", "America/New_York", START) == at("2026-01-01 08:00")


# 2026 in Berlin: clocks go 02:00 -> 03:00 on 29 March and 03:00 -> 02:00 on 25 October.
def test_a_time_skipped_by_spring_forward_fires_right_after_the_jump() -> None:
    runs = cron.next_runs("30 2 * * *", "Europe/Berlin", at("2026-03-27 12:00"), 4)
    assert [r.astimezone(BERLIN).strftime("%d %H:%M %Z") for r in runs] == ["28 02:30 CET", "29 03:00 CEST", "30 02:30 CEST", "31 02:30 CEST"]


def test_hourly_runs_skip_the_missing_hour_without_catching_up() -> None:
    runs = cron.next_runs("30 * * * *", "Europe/Berlin", at("2026-03-29 00:45", BERLIN), 3)
    assert runs == [at("2026-03-29 01:30", BERLIN), at("2026-03-29 03:30", BERLIN), at("2026-03-29 04:30", BERLIN)]


def test_a_time_repeated_by_fall_back_fires_once() -> None:
    runs = cron.next_runs("30 2 * * *", "Europe/Berlin", at("2026-10-24 12:00"), 3)
    assert [r.astimezone(BERLIN).strftime("%d %H:%M %Z") for r in runs] == ["25 02:30 CEST", "26 02:30 CET", "27 02:30 CET"]
    # Asked again just after the first pass (as the scheduler does), the second pass is not a slot.
    assert cron.next_run("30 2 * * *", "Europe/Berlin", runs[0]) == runs[1]
    # 01:30 is not repeated: one run that night, an hour before the shift.
    assert cron.next_runs("30 1 * * *", "Europe/Berlin", at("2026-10-24 12:00"), 2) == [
        at("2026-10-25 01:30", BERLIN),
        at("2026-10-26 01:30", BERLIN),
    ]


def test_wildcard_hours_fire_in_both_passes_of_the_repeated_hour() -> None:
    runs = cron.next_runs("0 * * * *", "Europe/Berlin", at("2026-10-24 23:30"), 4)
    assert runs == utc("2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00", "2026-10-25 03:00"), "every real hour"
    assert [r.astimezone(BERLIN).strftime("%H:%M %Z") for r in runs] == ["02:00 CEST", "02:00 CET", "03:00 CET", "04:00 CET"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("@reboot", r"@reboot is not supported"),
        ("@fortnightly", r"unknown macro '@fortnightly'"),
        ("@DAILY", r"unknown macro"),
        ("", r"expected 5 fields .*, got 0"),
        ("* * *", r"expected 5 fields .*, got 3"),
        ("0 0 * * * *", r"got 6"),
        ("0 0 * * * 2026", r"got 6"),
        ("61 * * * *", r"^minute: 61 is out of range 0-59$"),
        ("0 24 * * *", r"^hour: 24 is out of range 0-23$"),
        ("0 0 0 * *", r"^day-of-month: 0 is out of range 1-31$"),
        ("0 0 * 13 *", r"^month: 13 is out of range 1-12$"),
        ("0 0 * * 8", r"^day-of-week: 8 is out of range 0-7$"),
        ("0 0 * january *", r"^month: 'january' is not a value 1-12 or jan-dec$"),
        ("0 0 * * mon-friday", r"^day-of-week: 'friday'"),
        ("mon * * * *", r"^minute: 'mon' is not a value 0-59$"),
        ("5-1 * * * *", r"^minute: range '5-1' runs backwards"),
        ("0 0 * * fri-mon", r"^day-of-week: range 'fri-mon' runs backwards"),
        ("*/0 * * * *", r"^minute: step in '\*/0' must be 1-99$"),
        ("0 0 L * *", r"^day-of-month: 'L' is not a value"),
        ("0 0 15W * *", r"^day-of-month: '15W'"),
        ("0 0 * * 1#2", r"^day-of-week: '1#2' is not \*, a value"),
        ("0 0 ? * *", r"^day-of-month: '\?'"),
        ("H 0 * * *", r"^minute: 'H'"),
        ("0 3 * * *\n", r"^day-of-week"),
    ],
)
def test_invalid_expressions_are_refused_in_one_line_naming_the_field(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.next_runs(expression, "UTC", START)
    assert caught.value.field == "cron" and "\n" not in str(caught.value)
    assert re.search(message, str(caught.value)), str(caught.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "/etc/passwd", "../UTC", "", "localtime", "europe/berlin"])
def test_unknown_time_zones_are_refused_naming_the_timezone(name: str) -> None:
    with pytest.raises(cron.CronError, match="unknown time zone") as caught:
        cron.next_runs("0 3 * * *", name, START)
    assert caught.value.field == "timezone"


@hypothesis.settings(max_examples=300, deadline=None, database=None, derandomize=True)
@hypothesis.given(st.from_regex(cron.PATTERN, fullmatch=True))
def test_what_the_published_pattern_admits_parses_unless_a_range_runs_backwards(expression: str) -> None:
    try:
        cron.parse(expression)
    except cron.CronError as exc:
        assert "runs backwards" in str(exc), (expression, str(exc))


@hypothesis.settings(max_examples=300, deadline=None, database=None, derandomize=True)
@hypothesis.given(st.text(alphabet="0123456789*/,- \tmonJAsuL@dailyx#?", max_size=24))
def test_what_parses_matches_the_published_pattern(expression: str) -> None:
    try:
        cron.parse(expression)
    except cron.CronError:
        return
    assert cron.conforms(expression), expression
