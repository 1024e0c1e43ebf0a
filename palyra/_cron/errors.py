"""The scheduler's branch of the palyra exception tree (``palyra._exceptions``
has the rest): re-exported by ``palyra``."""

from __future__ import annotations

from .._exceptions import PalyraError

__all__ = ["JobNotFoundError", "ScheduleError", "SchedulerError"]


class SchedulerError(PalyraError):
    """A scheduler operation failed (`palyra.Scheduler`)."""


class ScheduleError(SchedulerError, ValueError):
    """A job's schedule or policy is invalid; ``field`` names the argument
    (``cron``, ``tz``, ``at``, ``every``, ``misfire``, ...) and the message
    what is wrong with it.

    Attributes:
        field: The argument (or ``jobs[i].field`` config path) at fault.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class JobNotFoundError(SchedulerError, LookupError):
    """No job of the scheduler has this id."""
