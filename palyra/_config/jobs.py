"""One ``[[jobs]]`` entry: a built-in maintenance job of the scheduler.

The schedule's syntax (a cron expression) is checked when the scheduler is
first used (``client.scheduler``), by croniter, with the entry's path in the
error (``jobs[0].cron``); everything else is checked here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, ValidationInfo, field_validator

from .base import ConfigModel, checked_zone

__all__ = ["JOB_KINDS", "JobConfig"]

JobKind = Literal[
    "health_probe", "credential_refresh", "budget_alerts", "ledger_retention"
]
JOB_KINDS: tuple[str, ...] = (
    "health_probe",
    "credential_refresh",
    "budget_alerts",
    "ledger_retention",
)
# When an entry names no schedule: often enough to matter, rarely enough to
# cost nothing (a probe is a request per provider).
DEFAULT_EVERY = {
    "health_probe": 300.0,
    "credential_refresh": 60.0,
    "budget_alerts": 60.0,
}
DEFAULT_CRON = {"ledger_retention": "17 3 * * *"}  # daily, off the hour
# Options that only one kind reads: set on another, they are a mistake.
_OPTIONS_OF = {
    "probe": "health_probe",
    "per": "health_probe",
    "models": "health_probe",
    "max_age_days": "ledger_retention",
    "mode": "ledger_retention",
}
_Seconds = Annotated[float, Field(gt=0, le=366 * 86_400)]


class JobConfig(ConfigModel):
    """A built-in job the scheduler runs (`palyra.Scheduler`).

    Args:
        kind: ``health_probe`` (one cheap request per provider or model, fed
            to the health windows and breakers), ``credential_refresh``
            (OAuth profiles within their refresh window), ``budget_alerts``
            (soft limits and window roll-over, with no call needed) or
            ``ledger_retention`` (records past ``max_age_days``).
        id: The job's id (default: its kind).
        cron: A cron expression (5 fields, or 6 with seconds last), read in
            ``tz``; or ``every`` (seconds), or ``at`` (a one-shot time). With
            none: every 300 s for probes, 60 s for refresh and alerts, daily
            at 03:17 for retention.
        tz: The IANA zone ``cron`` is read in.
        misfire: ``skip`` or ``catch_up`` (up to ``catch_up_max`` fires).
        concurrency: ``forbid``, ``queue`` or ``replace``.
        jitter: Seconds each fire may be delayed by, at most.
        retries: Retries of a failed run.
        max_runtime: Seconds a run may take.
        probe: ``models`` (the provider's model list), ``chat`` (a 1-token
            chat) or ``embedding`` (a one-word embedding).
        per: Probe each ``provider`` once, or each ``model``.
        models: Probe only these model ids (default: every enabled one).
        max_age_days: Records older than this are pruned.
        mode: ``delete`` them, or ``aggregate`` (keep the day totals).
    """

    kind: JobKind
    id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    cron: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    every: _Seconds | None = None
    at: AwareDatetime | None = None
    tz: str = "UTC"
    misfire: Literal["skip", "catch_up"] = "skip"
    catch_up_max: Annotated[int, Field(ge=1, le=1000)] = 3
    concurrency: Literal["forbid", "queue", "replace"] = "forbid"
    jitter: Annotated[float, Field(ge=0, le=86_400)] = 0.0
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    max_runtime: _Seconds | None = None
    probe: Literal["models", "chat", "embedding"] = "models"
    per: Literal["provider", "model"] = "provider"
    models: tuple[str, ...] | None = None
    max_age_days: Annotated[float, Field(gt=0, le=36_600)] = 90.0
    mode: Literal["delete", "aggregate"] = "delete"

    @field_validator("tz")
    @staticmethod
    def _check_tz(value: str) -> str:
        return checked_zone(value)

    @field_validator("every", "at")
    @staticmethod
    def _one_schedule(value: Any, info: ValidationInfo) -> Any:
        before = [n for n in ("cron", "every") if info.data.get(n) is not None]
        if value is not None and before:
            raise ValueError(f"give one of cron, every and at (this and {before[0]})")
        return value

    @field_validator("probe", "per", "models", "max_age_days", "mode")
    @staticmethod
    def _of_kind(value: Any, info: ValidationInfo) -> Any:
        kind, wanted = info.data.get("kind"), _OPTIONS_OF[str(info.field_name)]
        if kind is not None and kind != wanted:
            raise ValueError(f"only a {wanted} job takes it, not a {kind} job")
        if (
            info.field_name == "per"
            and value == "model"
            and info.data.get("probe") == "models"
        ):
            raise ValueError("a models probe asks each provider once: per = 'provider'")
        return value

    def schedule(self) -> dict[str, Any]:
        """The scheduler's schedule arguments (the kind's default if none)."""
        if self.cron is not None:
            return {"cron": self.cron, "tz": self.tz}
        if self.every is not None:
            return {"every": self.every}
        if self.at is not None:
            return {"at": self.at}
        if self.kind in DEFAULT_CRON:
            return {"cron": DEFAULT_CRON[self.kind], "tz": self.tz}
        return {"every": DEFAULT_EVERY[self.kind]}
