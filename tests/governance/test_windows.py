"""Budget windows: calendar bounds in a time zone, across DST and gaps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from palyra._governance import Window
from palyra._governance.windows import local_midnight

TICK = timedelta(microseconds=1)
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def _local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone)  # type: ignore[misc,arg-type]


def test_lifetime_and_rolling() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert Window().bounds(now) == (None, None)
    assert Window().key(now) is None
    assert Window("24h").bounds(now) == (now - timedelta(hours=24), None)
    assert Window("90m").bounds(now)[0] == now - timedelta(minutes=90)
    assert Window("7d").key(now) is None
    assert Window("7d").duration == timedelta(days=7)


def test_describe() -> None:
    assert Window().describe() == "lifetime"
    assert Window("day", "Europe/Paris").describe() == "day in Europe/Paris"
    assert Window("24h").describe() == "rolling 24h"


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match="rolling"):
        Window("yearly")
    with pytest.raises(ValueError, match="366d"):
        Window("400d")


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK, ZoneInfo("UTC")])
def test_a_microsecond_around_midnight(zone: ZoneInfo) -> None:
    window = Window("day", str(zone))
    midnight = _local(zone, 2026, 6, 10).astimezone(UTC)
    before, at, after = (window.bounds(midnight + d) for d in (-TICK, 0 * TICK, TICK))
    assert before[1] == midnight  # the day before ends exactly there
    assert at[0] == midnight
    assert after[0] == midnight
    assert at[1] == _local(zone, 2026, 6, 11).astimezone(UTC)
    assert (
        window.key(midnight - TICK)
        != window.key(midnight)
        == window.key(midnight + TICK)
    )


def test_bounds_are_utc_and_hold_now() -> None:
    now = _local(PARIS, 2026, 6, 10, 15, 30)
    start, end = Window("day", "Europe/Paris").bounds(now)
    assert start == datetime(2026, 6, 9, 22, tzinfo=UTC)
    assert end == datetime(2026, 6, 10, 22, tzinfo=UTC)
    assert start is not None
    assert start.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        (PARIS, date(2026, 3, 29), 23),  # spring forward: 02:00 -> 03:00
        (PARIS, date(2026, 10, 25), 25),  # fall back: 03:00 -> 02:00
        (NEW_YORK, date(2026, 3, 8), 23),
        (NEW_YORK, date(2026, 11, 1), 25),
        (PARIS, date(2026, 6, 10), 24),
    ],
)
def test_dst_days_are_23_or_25_hours(zone: ZoneInfo, day: date, hours: int) -> None:
    window = Window("day", str(zone))
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone)
    start, end = window.bounds(noon)
    assert start is not None
    assert end is not None
    assert end - start == timedelta(hours=hours)
    assert start == datetime(day.year, day.month, day.day, tzinfo=zone)
    # The hour after the change still belongs to the same day.
    assert window.bounds(end - TICK) == (start, end)
    assert window.bounds(end)[0] == end


def test_the_repeated_hour_is_one_day() -> None:
    # New York, 2026-11-01: 01:00-01:59 happens twice, both in that day.
    window = Window("day", "America/New_York")
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    second = first.replace(fold=1)
    assert first.astimezone(UTC) != second.astimezone(UTC)
    assert window.bounds(first) == window.bounds(second)


def test_a_midnight_that_does_not_exist() -> None:
    # America/Santiago jumps from 2026-09-05 23:59:59 -04 to 01:00 -03.
    zone = ZoneInfo("America/Santiago")
    jump = datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert (jump - TICK).astimezone(zone).hour == 23
    assert jump.astimezone(zone).hour == 1
    window = Window("day", "America/Santiago")
    start, end = window.bounds(jump)
    assert start == jump  # the first instant that exists
    assert end is not None
    assert end - start == timedelta(hours=23)
    assert window.bounds(jump - TICK)[1] == jump
    assert local_midnight(date(2026, 9, 6), zone) == jump


def test_a_midnight_that_happens_twice() -> None:
    # America/Havana, 2026-11-01: 01:00 -04 falls back to 00:00 -05.
    zone = ZoneInfo("America/Havana")
    first = datetime(2026, 11, 1, 4, tzinfo=UTC)
    assert first.astimezone(zone).hour == 0
    assert (first + timedelta(hours=1)).astimezone(zone).hour == 0
    start, end = Window("day", "America/Havana").bounds(first + timedelta(hours=1))
    assert start == first
    assert end is not None
    assert end - start == timedelta(hours=25)


def test_havana_spring_gap_at_midnight() -> None:
    zone = ZoneInfo("America/Havana")
    start = local_midnight(date(2026, 3, 8), zone)
    assert start == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert start.astimezone(zone).hour == 1
    assert (start - TICK).astimezone(zone).day == 7


def test_week_starts_on_monday_midnight() -> None:
    window = Window("week", "Europe/Paris")
    sunday_night = _local(PARIS, 2026, 12, 6, 23, 59, 59)  # a Sunday
    monday = _local(PARIS, 2026, 12, 7).astimezone(UTC)
    start, end = window.bounds(sunday_night)
    assert start == _local(PARIS, 2026, 11, 30).astimezone(UTC)
    assert end == monday
    assert window.bounds(monday)[0] == monday
    assert window.bounds(monday - TICK)[1] == monday
    assert window.bounds(_local(PARIS, 2026, 12, 9, 12))[0] == monday


def test_week_across_a_dst_change_is_167_hours() -> None:
    start, end = Window("week", "Europe/Paris").bounds(_local(PARIS, 2026, 3, 25))
    assert start is not None
    assert end is not None
    assert end - start == timedelta(hours=167)


def test_month_and_year_rollover() -> None:
    window = Window("month", "America/New_York")
    new_year = _local(NEW_YORK, 2027, 1, 1).astimezone(UTC)
    assert window.bounds(new_year - TICK) == (
        _local(NEW_YORK, 2026, 12, 1).astimezone(UTC),
        new_year,
    )
    assert window.bounds(new_year)[0] == new_year
    assert window.bounds(new_year)[1] == _local(NEW_YORK, 2027, 2, 1).astimezone(UTC)
    feb = window.bounds(_local(NEW_YORK, 2028, 2, 15))
    assert feb[1] is not None
    assert feb[0] is not None
    assert (feb[1] - feb[0]).days == 29  # leap year


def test_the_zone_decides_the_day_of_an_instant() -> None:
    now = datetime(2026, 6, 10, 23, 30, tzinfo=UTC)  # 01:30 on the 11th in Paris
    paris = Window("day", "Europe/Paris").bounds(now)[0]
    utc = Window("day", "UTC").bounds(now)[0]
    assert paris == datetime(2026, 6, 10, 22, tzinfo=UTC)
    assert utc == datetime(2026, 6, 10, tzinfo=UTC)


def test_equality() -> None:
    assert Window("day", "UTC") == Window("day", "UTC")
    assert Window("day", "UTC") != Window("day", "Europe/Paris")
    assert len({Window("7d"), Window("7d")}) == 1
