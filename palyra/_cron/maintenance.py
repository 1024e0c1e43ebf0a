"""The built-in maintenance jobs (``[[jobs]]``), written against the client's
public surface as any user's job is: ``ctx.client`` is all they use, so their
calls are routed, budgeted, recorded and traced like any other.

- ``health_probe``: one cheap request per provider or per model (its model
  list, a 1-token chat or a one-word embedding), on that model only
  (``failover=False``, ``route="off"``), as ``principal="system:health"``.
  Its answer feeds the health windows and breakers as any call's does, so a
  half-open breaker closes (or opens again) without waiting for a user. A
  probe a budget refuses, or that an open breaker holds back, is skipped;
  one that fails makes the run an ``error`` naming each failed target.
- ``credential_refresh``: every OAuth profile whose access token expires
  within ``[auth] refresh_window`` is refreshed before a call needs it. A
  failure is recorded on the profile (its backoff and ``refresh_error``)
  and the others go on.
- ``budget_alerts``: `client.budgets.evaluate()`: windows that rolled over
  are opened, spending re-read from the ledger, due alerts sent.
- ``ledger_retention``: `client.usage.prune` of records past ``max_age_days``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .._config import JobConfig
from .._exceptions import BudgetExceededError, NoProviderAvailableError
from .context import JobContext
from .errors import ScheduleError, SchedulerError
from .policies import catch_up

__all__ = [
    "HEALTH_PRINCIPAL",
    "MaintenanceError",
    "add_configured",
    "builtin_job",
    "job_options",
]

HEALTH_PRINCIPAL = "system:health"
_PING = [{"role": "user", "content": "ping"}]
_ROLE = {"chat": "chat", "embedding": "embeddings", "models": None}


class MaintenanceError(SchedulerError):
    """A maintenance run found failures; the message names each (never a
    secret: target ids and error classes only)."""


def add_configured(scheduler: Any, jobs: tuple[JobConfig, ...]) -> None:
    """Add the ``[[jobs]]`` entries to ``scheduler``.

    Raises:
        ScheduleError: naming the entry's field (``jobs[0].cron``).
    """
    for index, config in enumerate(jobs):
        try:
            scheduler.add(builtin_job(config), **job_options(config))
        except ScheduleError as exc:
            message = str(exc).split(": ", 1)[-1]
            raise ScheduleError(f"jobs[{index}].{exc.field}", message) from None


def job_options(config: JobConfig) -> dict[str, Any]:
    """`Scheduler.add`'s keyword arguments for the ``[[jobs]]`` entry."""
    options: dict[str, Any] = {
        **config.schedule(),
        "id": config.id or config.kind,
        "misfire": catch_up(config.catch_up_max)
        if config.misfire == "catch_up"
        else "skip",
        "concurrency": config.concurrency,
        "jitter": config.jitter,
        "retries": config.retries,
        "max_runtime": config.max_runtime,
    }
    return options


def builtin_job(config: JobConfig) -> Callable[[JobContext], None]:
    """The job function of a ``[[jobs]]`` entry."""
    kinds: dict[str, Callable[[JobConfig], Callable[[JobContext], None]]] = {
        "health_probe": _health_probe,
        "credential_refresh": _credential_refresh,
        "budget_alerts": _budget_alerts,
        "ledger_retention": _ledger_retention,
    }
    return kinds[config.kind](config)


def _health_probe(config: JobConfig) -> Callable[[JobContext], None]:
    def health_probe(ctx: JobContext) -> None:
        client = ctx.client.bind(principal=HEALTH_PRINCIPAL)
        targets = probe_targets(client.models(), config)
        failed: list[str] = []
        for provider, model in targets:
            if ctx.cancelled.is_set():
                break
            try:
                _probe(client, config.probe, provider, model)
            except (BudgetExceededError, NoProviderAvailableError):
                continue  # refused by a budget, or held back by an open breaker
            except Exception as exc:  # the failure is the finding
                failed.append(f"{provider}/{model}: {type(exc).__name__}")
        if failed:
            raise MaintenanceError(
                f"{len(failed)} of {len(targets)} probes failed: {'; '.join(failed)}"
            )

    return health_probe


def probe_targets(models: list[Any], config: JobConfig) -> list[tuple[str, str]]:
    """The (provider, model) pairs a probe asks: every enabled model of the
    probe's role (or those ``models`` names), or the first of each provider."""
    role = _ROLE[config.probe]
    chosen = [
        m
        for m in models
        if m.enabled
        and (role is None or m.role == role)
        and (config.models is None or m.id in config.models)
    ]
    if config.per == "provider":
        first: dict[str, Any] = {}
        for model in chosen:
            first.setdefault(model.owned_by, model)
        chosen = list(first.values())
    return [(m.owned_by, m.id) for m in chosen]


def _probe(client: Any, how: str, provider: str, model: str) -> None:
    if how == "models":
        client.provider_models(provider)
    elif how == "chat":
        client.chat(_PING, model=model, max_tokens=1, route="off", failover=False)
    else:
        client.embed("ping", model=model, failover=False)


def _credential_refresh(config: JobConfig) -> Callable[[JobContext], None]:
    def credential_refresh(ctx: JobContext) -> None:
        client = ctx.client
        window = timedelta(seconds=client.config.auth.refresh_window)
        now = datetime.now(UTC)
        failed: list[str] = []
        for profile in client.auth.list():
            if ctx.cancelled.is_set():
                break
            if not _due(profile, now, window):
                continue
            try:
                client.auth.refresh(profile.id)
            except Exception as exc:  # marked on the profile; the others go on
                failed.append(f"{profile.id}: {type(exc).__name__}")
        if failed:
            raise MaintenanceError(f"refresh failed for {'; '.join(failed)}")

    return credential_refresh


def _due(profile: Any, now: datetime, window: timedelta) -> bool:
    """An OAuth profile whose token expires within ``window``, and whose
    last failure's backoff has passed."""
    if profile.kind != "oauth" or profile.expires_at is None:
        return False
    held = profile.next_refresh_at
    if held is not None and held > now:
        return False
    return bool(profile.expires_at - now <= window)


def _budget_alerts(config: JobConfig) -> Callable[[JobContext], None]:
    def budget_alerts(ctx: JobContext) -> None:
        ctx.client.budgets.evaluate()

    return budget_alerts


def _ledger_retention(config: JobConfig) -> Callable[[JobContext], None]:
    def ledger_retention(ctx: JobContext) -> None:
        # From the fire's time: a manual clock drives it as any other job.
        before = ctx.scheduled_at - timedelta(days=config.max_age_days)
        ctx.client.usage.prune(before, mode=config.mode)

    return ledger_retention
