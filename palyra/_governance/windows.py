"""Budget windows: which span of time a budget's spending is counted over.

A `Window` is ``lifetime`` (no bounds), a calendar ``day``, ``week`` (ISO:
from Monday) or ``month`` starting at local midnight in its time zone, or a
rolling duration (the last 24 hours, say). Calendar bounds are worked out
with `zoneinfo`, so a day is 23 or 25 hours long across a daylight-saving
change, and a local midnight that does not exist (some zones jump from
23:59:59 to 01:00) starts the day at the first instant that does. Bounds are
UTC-aware datetimes; windows are half-open, ``start <= t < end``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from .._config import parse_window

__all__ = ["Window", "local_midnight"]

_TICK = timedelta(microseconds=1)


class Window:
    """A budget window, parsed from the config's ``window`` and ``tz``.

    Args:
        spec: ``lifetime``, ``day``, ``week``, ``month`` or a rolling
            duration ``<n>s|m|h|d|w`` (``"24h"``, ``"7d"``).
        tz: The IANA zone calendar windows start their days in.

    Raises:
        ValueError: A bad ``spec``; `zoneinfo` errors for a bad ``tz``.
    """

    __slots__ = ("_zone", "duration", "kind", "spec", "tz")

    def __init__(self, spec: str = "lifetime", tz: str = "UTC") -> None:
        kind, seconds = parse_window(spec)
        self.spec = spec
        self.kind = kind
        self.tz = tz
        self._zone = ZoneInfo(tz)
        # The length of a rolling window; None for the others.
        self.duration = None if seconds is None else timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"Window({self.spec!r}, tz={self.tz!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Window):
            return NotImplemented
        return (self.spec, self.tz) == (other.spec, other.tz)

    def __hash__(self) -> int:
        return hash((self.spec, self.tz))

    @property
    def calendar(self) -> bool:
        """Whether this is a day, week or month."""
        return self.kind in ("day", "week", "month")

    def describe(self) -> str:
        """``"lifetime"``, ``"day in Europe/Paris"``, ``"rolling 24h"``."""
        if self.calendar:
            return f"{self.kind} in {self.tz}"
        if self.duration is not None:
            return f"rolling {self.spec}"
        return "lifetime"

    def bounds(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """The UTC start and end of the window holding ``now`` (aware).

        Lifetime is ``(None, None)``; rolling is ``(now - duration, None)``.
        """
        if self.duration is not None:
            return (now - self.duration).astimezone(UTC), None
        if not self.calendar:
            return None, None
        today = now.astimezone(self._zone).date()
        if self.kind == "day":
            first, after = today, today + timedelta(days=1)
        elif self.kind == "week":
            first = today - timedelta(days=today.weekday())
            after = first + timedelta(days=7)
        else:
            first = today.replace(day=1)
            after = (first + timedelta(days=32)).replace(day=1)
        return local_midnight(first, self._zone), local_midnight(after, self._zone)

    def key(self, now: datetime) -> datetime | None:
        """A hashable id of the calendar window holding ``now``: its start
        (None for lifetime and rolling windows, which have one state)."""
        return self.bounds(now)[0] if self.calendar else None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant ``day`` begins in ``zone``.

    When local midnight happens twice (a fall-back at 01:00 back to 00:00),
    the day begins at the first; when it does not happen (a spring-forward
    at 00:00), at the first instant after the jump.
    """
    local = datetime(day.year, day.month, day.day, tzinfo=zone)  # fold=0: the first
    wall = local.replace(tzinfo=None)
    start = local.astimezone(UTC)
    if start.astimezone(zone).replace(tzinfo=None) == wall:
        return start
    # In a gap: fold=0 and fold=1 read the wall time with the offsets on
    # either side of the jump, so the jump lies between the two readings.
    other = local.replace(fold=1).astimezone(UTC)
    low, high = min(start, other), max(start, other)
    while high - low > _TICK:  # the first instant whose wall time is >= wall
        middle = low + (high - low) // 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high
