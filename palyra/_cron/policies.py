"""A job's policies, small objects the scheduler asks: what to do with fires
missed while nothing ran (misfire), with a fire that comes while the last run
is still going (concurrency), with a failed run (retry), and how far to
spread fires (jitter). Pure.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from .errors import ScheduleError

__all__ = [
    "CONCURRENCY",
    "Concurrency",
    "Misfire",
    "Retry",
    "catch_up",
    "checked_concurrency",
    "checked_misfire",
    "checked_retry",
    "checked_seconds",
    "jitter_of",
]

Concurrency = Literal["forbid", "queue", "replace"]
CONCURRENCY: tuple[Concurrency, ...] = ("forbid", "queue", "replace")
MAX_CATCH_UP = 1000


@dataclass(frozen=True, slots=True)
class Misfire:
    """What a job does with fires missed while the scheduler did not run
    (the process was down, the machine asleep, the loop blocked).

    ``catch_up == 0`` is ``"skip"``: run once, for the latest missed fire,
    and jump past the backlog. Otherwise up to ``catch_up`` of the latest
    missed fires run, one after another, oldest first; older ones are
    recorded as skipped.
    """

    catch_up: int = 0

    def runs(self, missed: int) -> int:
        """How many of ``missed`` due fires run."""
        return min(missed, max(1, self.catch_up))

    def __str__(self) -> str:
        return "skip" if self.catch_up == 0 else f"catch_up(max={self.catch_up})"


def catch_up(max: int = 3) -> Misfire:
    """The misfire policy that replays up to ``max`` missed fires.

    Raises:
        ScheduleError: field ``misfire``, unless 1 <= max <= 1000.
    """
    if (
        isinstance(max, bool)
        or not isinstance(max, int)
        or not 1 <= max <= MAX_CATCH_UP
    ):
        raise ScheduleError(
            "misfire", f"catch_up(max=) takes 1 to {MAX_CATCH_UP}, not {max!r}"
        )
    return Misfire(max)


def checked_misfire(value: object) -> Misfire:
    """``"skip"``, ``"catch_up"`` (max 3) or a `Misfire`.

    Raises:
        ScheduleError: field ``misfire``.
    """
    if isinstance(value, Misfire):
        return value
    if value == "skip":
        return Misfire()
    if value == "catch_up":
        return catch_up()
    raise ScheduleError(
        "misfire", f"must be 'skip', 'catch_up' or catch_up(max=N), not {value!r}"
    )


def checked_concurrency(value: object) -> Concurrency:
    """Raises `ScheduleError` (field ``concurrency``) unless a known policy."""
    if value not in CONCURRENCY:
        raise ScheduleError(
            "concurrency", f"must be 'forbid', 'queue' or 'replace', not {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Retry:
    """Retries of a failed run: up to ``times`` more attempts, the k-th
    ``min(cap, base * 2**(k-1))`` seconds after the failure.

    Raises:
        ScheduleError: field ``retries``, for a negative count or delays.
    """

    times: int = 0
    base: float = 1.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.times, bool) or not isinstance(self.times, int):
            raise ScheduleError("retries", f"must be a count, not {self.times!r}")
        if not 0 <= self.times <= 100:
            raise ScheduleError("retries", f"takes 0 to 100, not {self.times}")
        for name in ("base", "cap"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ScheduleError(
                    "retries", f"{name} must be positive, not {value!r}"
                )

    def delay(self, attempt: int) -> float | None:
        """Seconds before the attempt after ``attempt`` (1-based); None when
        no attempt is left."""
        if attempt > self.times:
            return None
        return float(min(self.cap, self.base * 2 ** (attempt - 1)))


def checked_retry(value: object) -> Retry:
    """An int (that many retries, defaults otherwise) or a `Retry`."""
    if isinstance(value, Retry):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError("retries", f"must be a count or Retry, not {value!r}")
    return Retry(value)


def checked_seconds(value: object, field: str, *, zero: bool) -> float | None:
    """Seconds from a number or timedelta (None stays None).

    Raises:
        ScheduleError: naming ``field``, for a negative (or, unless ``zero``,
            zero) or non-finite value.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(field, f"must be seconds or a timedelta, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise ScheduleError(
            field, f"must be a positive number of seconds, not {value!r}"
        )
    return seconds


def jitter_of(job_id: str, tick: datetime, jitter: float) -> float:
    """The delay in [0, ``jitter``] seconds of the fire at ``tick``.

    Deterministic: SHA-256 of ``"{job_id}:{tick, ms since the epoch}"``, so
    every process (and every run of a test) agrees, and each fire gets its
    own. It is added to the fire, never to the schedule: ticks stay where the
    schedule puts them, and jitter cannot accumulate.
    """
    if jitter <= 0:
        return 0.0
    ms = round(tick.timestamp() * 1000)
    digest = hashlib.sha256(f"{job_id}:{ms}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * jitter
