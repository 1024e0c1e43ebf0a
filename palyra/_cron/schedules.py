"""When a job fires: cron expressions in a named time zone, fixed intervals,
one-shot times. Pure: a schedule answers "the first fire strictly after t".

Cron expressions go through croniter (its only user in palyra): 5 fields, or
6 with seconds as croniter reads them (the sixth, last field), names, ranges,
steps, lists and the ``@hourly``-style aliases. They are matched against the
wall clock of the job's zone, so daylight saving time behaves as a person
reading the expression expects: a local time that does not exist (the hour
skipped in spring) is skipped, and a local time that happens twice (the hour
repeated in autumn) fires once, at its first occurrence. A job that must run
at a steady pace through those nights uses ``every=`` instead, which counts
real time.

Intervals are aligned to the Unix epoch (``every=timedelta(hours=1)`` fires
on each hour, UTC), so every process computes the same fire times whenever
it starts, and nothing drifts.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ScheduleError

__all__ = [
    "AtSchedule",
    "CronSchedule",
    "EverySchedule",
    "Schedule",
    "aware",
    "make_schedule",
    "zone_of",
]

ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# Skipped local times (DST gaps) and second passes of repeated hours are
# stepped over; a year of them never needs this many steps.
_MAX_STEPS = 10_000


class Schedule(Protocol):
    """Fire times of a job."""

    def next_after(self, t: datetime) -> datetime | None:
        """The first fire strictly after ``t`` (aware), in UTC; None when the
        schedule has no more."""
        ...

    def describe(self) -> str:
        """The schedule as the user wrote it."""
        ...


def zone_of(tz: object) -> ZoneInfo:
    """The IANA zone named ``tz``.

    Raises:
        ScheduleError: field ``tz``, for an unknown or malformed name.
    """
    if isinstance(tz, ZoneInfo):
        return tz
    if not isinstance(tz, str) or not tz:
        raise ScheduleError("tz", f"must be an IANA zone name, not {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "tz", f"unknown time zone {tz!r} (an IANA name, e.g. 'Europe/Prague')"
        ) from None


def aware(value: datetime, field: str) -> datetime:
    """``value`` in UTC.

    Raises:
        ScheduleError: naming ``field``, for a naive datetime.
    """
    if not isinstance(value, datetime):
        raise ScheduleError(field, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(
            field,
            f"{value.isoformat()} has no time zone; give an aware datetime"
            " (e.g. datetime(..., tzinfo=ZoneInfo('Europe/Prague')))",
        )
    return value.astimezone(UTC)


class CronSchedule:
    """A cron expression read on the wall clock of ``tz``.

    Raises:
        ScheduleError: field ``cron`` for a bad expression or one that
            matches no date; ``tz`` for an unknown zone.
    """

    def __init__(self, expression: str, tz: str | ZoneInfo = "UTC") -> None:
        self.expression = _checked_expression(expression)
        self.zone = zone_of(tz)
        # An expression that parses but never matches (30 February) fails now.
        if self.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise ScheduleError("cron", f"{expression!r} matches no date")

    def next_after(self, t: datetime) -> datetime | None:
        from croniter import CroniterBadDateError, croniter

        zone = self.zone
        local = t.astimezone(zone).replace(tzinfo=None)
        try:
            times = croniter(self.expression, local)
            for _ in range(_MAX_STEPS):
                wall = times.get_next(datetime)
                candidate = wall.replace(tzinfo=zone)  # fold=0: a repeat's first pass
                if candidate.astimezone(UTC).astimezone(zone).replace(
                    tzinfo=None
                ) != wall.replace(tzinfo=None):
                    continue  # in a DST gap: this local time does not exist
                fire = candidate.astimezone(UTC)
                if fire > t:
                    return fire
                # A repeated hour's second pass: its times fired in the first.
        except CroniterBadDateError:
            return None
        return None

    def previous(self, t: datetime) -> datetime | None:
        """The last fire at or before ``t``, in UTC (the same DST rules)."""
        from croniter import CroniterBadDateError, croniter

        zone = self.zone
        start = (t.astimezone(zone) + timedelta(seconds=1)).replace(tzinfo=None)
        try:
            times = croniter(self.expression, start)
            for _ in range(_MAX_STEPS):
                wall = times.get_prev(datetime)
                candidate = wall.replace(tzinfo=zone)
                back = candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
                if back != wall.replace(tzinfo=None):
                    continue  # in a DST gap
                fire = candidate.astimezone(UTC)
                if fire <= t:
                    return fire
        except CroniterBadDateError:
            return None
        return None

    def latest(self, now: datetime, n: int, since: datetime) -> list[datetime]:
        """Up to ``n`` of the last fires in ``[since, now]``, oldest first."""
        found: list[datetime] = []
        tick = self.previous(now)
        while tick is not None and tick >= since and len(found) < n:
            found.append(tick)
            tick = self.previous(tick - timedelta(microseconds=1))
        return found[::-1]

    def shortest_gap(self, after: datetime, fires: int = 12) -> float:
        """The shortest time between the next ``fires`` fires, in seconds."""
        ticks: list[datetime] = []
        tick = self.next_after(after)
        while tick is not None and len(ticks) < fires:
            ticks.append(tick)
            tick = self.next_after(tick)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)]
        return min(gaps, default=float("inf"))

    def describe(self) -> str:
        return f"cron {self.expression!r} in {self.zone.key}"


class EverySchedule:
    """Every ``interval``, on multiples of it since the Unix epoch.

    Raises:
        ScheduleError: field ``every``, unless it is positive.
    """

    def __init__(self, interval: timedelta | float) -> None:
        if isinstance(interval, bool) or not isinstance(
            interval, (timedelta, int, float)
        ):
            raise ScheduleError(
                "every", f"must be a timedelta or seconds, not {interval!r}"
            )
        seconds = (
            interval.total_seconds() if isinstance(interval, timedelta) else interval
        )
        if not math.isfinite(seconds) or seconds <= 0:
            raise ScheduleError("every", f"must be positive, not {interval!r}")
        if seconds < 0.001:
            raise ScheduleError("every", "must be at least a millisecond")
        self.seconds = float(seconds)

    def next_after(self, t: datetime) -> datetime:
        ticks = math.floor(t.timestamp() / self.seconds) + 1
        fire = datetime.fromtimestamp(ticks * self.seconds, UTC)
        return fire if fire > t else fire + timedelta(seconds=self.seconds)

    def describe(self) -> str:
        return f"every {timedelta(seconds=self.seconds)}"


class AtSchedule:
    """Once, at ``at`` (an aware datetime).

    Raises:
        ScheduleError: field ``at``, for a naive datetime.
    """

    def __init__(self, at: datetime) -> None:
        self.at = aware(at, "at")

    def next_after(self, t: datetime) -> datetime | None:
        return self.at if self.at > t else None

    def first(self) -> datetime:
        """Its one fire, even when already past (misfire policies decide)."""
        return self.at

    def describe(self) -> str:
        return f"at {self.at.isoformat()}"


def make_schedule(
    cron: str | None,
    every: timedelta | float | None,
    at: datetime | None,
    tz: str | ZoneInfo,
) -> Schedule:
    """The schedule of exactly one of ``cron``, ``every`` and ``at``.

    Raises:
        ScheduleError: naming the field at fault.
    """
    given = [
        name
        for name, v in (("cron", cron), ("every", every), ("at", at))
        if v is not None
    ]
    if len(given) != 1:
        which = " and ".join(given) if given else "none"
        raise ScheduleError(
            "cron", f"give exactly one of cron, every and at (got {which})"
        )
    zone = zone_of(tz)
    if cron is not None:
        return CronSchedule(cron, zone)
    if every is not None:
        return EverySchedule(every)
    assert at is not None
    return AtSchedule(at)


def _checked_expression(expression: object) -> str:
    from croniter import CroniterError, croniter

    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleError("cron", f"must be a cron expression, not {expression!r}")
    text = " ".join(expression.split())
    fields = text.split(" ")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            known = ", ".join(sorted(ALIASES))
            raise ScheduleError("cron", f"unknown alias {text!r} (one of {known})")
        return text.lower()
    if len(fields) not in (5, 6):
        raise ScheduleError(
            "cron",
            f"{text!r} has {len(fields)} fields; give 5 (minute hour day month"
            " weekday) or 6 (the same, then seconds)",
        )
    try:
        croniter(text)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ScheduleError("cron", f"{text!r} is not valid: {exc}") from None
    return text
