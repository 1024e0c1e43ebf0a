"""`Palyra`: the in-process client, and the one place that wires palyra together.

The client builds the registry, the adapters, the pipeline and its two
drivers, and joins the subsystems to the pipeline through its hooks; its calls
(`palyra._calls`) run flows of the pipeline on the drivers. Building a client
does no I/O: no DNS, socket, file, keyring or tokenizer is touched until a
call needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import httpx

from ._access import TokenService
from ._auth import (
    Auth,
    CallGate,
    Exchange,
    KeyringSecretStore,
    ProfileBook,
    ProfileCredentials,
    ProfileFile,
    SecretStore,
    book_for,
    check_record,
    default_home,
)
from ._calls import Calls, Tags
from ._choices import (
    configured_keys,
    load_config,
    may_route,
    may_use_profiles,
    relies_on_profiles,
)
from ._config import PalyraConfig, ProviderConfig
from ._core import (
    NOBODY,
    AsyncDriver,
    Caller,
    Deferred,
    HealthTracker,
    ModelHealth,
    NetworkGuard,
    Pipeline,
    Resolver,
    SyncDriver,
    classify,
)
from ._credentials import CredentialResolver, checked
from ._exceptions import ConfigError
from ._governance import (
    AlertLog,
    BudgetAlert,
    Budgets,
    BudgetService,
    LedgerSlot,
    Meter,
    PriceBook,
    UsageLedger,
    UsageService,
)
from ._metering import Governance
from ._observe import CallEvent, Observability
from ._providers import Adapters
from ._registry import Registry
from ._routing import Assessor, CacheShares, Router, Routing
from ._state import RedisState, chosen_state
from ._tokens import TiktokenCounter, TokenCounter
from ._wire import ModelInfo

if TYPE_CHECKING:
    from ._cron import Scheduler
    from ._providers import DeterministicAdapter, DeterministicBackend

__all__ = ["Palyra"]

logger = logging.getLogger("palyra")
_CRON_LOCK = threading.Lock()


class Palyra(Calls):
    """One client for every configured model provider.

    Every call also takes ``agent``, ``session``, ``principal`` and ``tags``
    (a mapping of str to str): who the call is for. They default to the
    values given to `bind`, are checked (`InvalidRequestError` names a bad
    one) and come back in ``reply.palyra``.

    Args:
        config: A `PalyraConfig`, a dict in the same shape, a path to a TOML file,
            or None for the offline deterministic provider.
        transport: httpx transport for sync calls (tests inject
            `httpx.MockTransport`). It replaces palyra's own, and with it the
            network guard.
        async_transport: httpx transport for async calls.
        token_counter: Replaces the tiktoken-based estimator.
        credentials: Replaces the credential lookup: takes a `ProviderConfig`,
            returns the key (or None).
        sleep: Waits between retries in sync calls (default `time.sleep`);
            tests pass a recorder.
        async_sleep: Waits between retries in async calls (default
            `asyncio.sleep`).
        clock: Monotonic seconds for circuit-breaker cooldowns, health
            windows and call deadlines (default `time.monotonic`). Tests pass
            a fake clock that their fake ``sleep`` advances.
        resolver: Resolves upstream host names for the network guard when a
            connection is opened: takes a host and a port, returns IP address
            strings (default: the system resolver, bounded by the connect
            timeout). Whatever it raises is an `APIConnectionError` with that
            exception as its ``__cause__``.
        secrets: Where auth profiles' secrets live (default: the OS keyring,
            `KeyringSecretStore`; `MemorySecretStore` keeps them in memory).
        home: palyra's directory for its files (the auth profile file, the
            usage ledger): this, else ``$PALYRA_HOME``, else the platform's
            user config directory. Nothing is read or made there until a
            profile is used or a call is recorded.
        ledger: Where each call's usage record goes: a `UsageLedger`
            (`SQLiteLedger`, `MemoryLedger`, your own), False for none, or
            None for the ``[ledger]`` table's choice (by default a
            `SQLiteLedger` at ``<home>/usage.sqlite3``, opened on the first
            record).
        on_budget_alert: Called with a `BudgetAlert` when a budget's spending
            reaches one of its ``alert_at`` thresholds (once per budget, scope
            value, window and threshold; also logged). It runs on the thread
            that settled the call; what it raises is logged, never raised.
            With shared state, each alert is sent once across every process.
        state: Where state shared with other processes lives: a
            `RedisState`, ``"memory"`` (this process only), or None for the
            ``[state]`` table's choice (memory by default). Nothing connects
            before a call needs it.
        on_event: Called with each call's `CallEvent`s (``start``,
            ``first_token``, ``end``, ``error``, ``cancelled``; a callable or a
            list; plain or ``async def``): once per call and kind, in order,
            from one thread of palyra's through a bounded queue, never on the
            call's path (see ``client.observability.stats()``, ``flush``).
        capture_content: Put the prompt and the answer in the events (off:
            content is never recorded).
        otel: OpenTelemetry spans and metrics of every call (the ``otel``
            extra); None for ``[observability] otel``.

    Raises:
        ConfigError: when the configuration is invalid.
    """

    def __init__(
        self,
        config: PalyraConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        token_counter: TokenCounter | None = None,
        credentials: Callable[[ProviderConfig], str | None] | None = None,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        resolver: Resolver | None = None,
        secrets: SecretStore | None = None,
        home: str | Path | None = None,
        ledger: UsageLedger | bool | None = None,
        on_budget_alert: Callable[[BudgetAlert], None] | None = None,
        state: RedisState | str | None = None,
        on_event: Callable[[CallEvent], Any] | Iterable[Any] | None = None,
        capture_content: bool = False,
        otel: bool | None = None,
    ) -> None:
        self.config = load_config(config)
        self._caller = NOBODY
        self._registry = Registry(self.config)
        counter = token_counter or TiktokenCounter()  # loads nothing yet
        self._adapters = Adapters(lambda: counter)
        guard = NetworkGuard.for_providers(self.config.providers, resolver)
        if async_transport is None and isinstance(transport, httpx.AsyncBaseTransport):
            # MockTransport and friends serve both worlds: never fall through
            # to the real network for async calls when a transport was given.
            async_transport = transport
        later = Deferred()  # what dropped streams leave to the next call
        self._sync = SyncDriver(transport, guard, sleep or time.sleep, later)
        self._async = AsyncDriver(async_transport, guard, async_sleep, later)
        clock = clock or time.monotonic
        home_dir = default_home(home)
        book = book_for(
            home_dir, secrets or KeyringSecretStore(), _new_book
        )  # no I/O: the file and the vault are read on first use
        profiles = ProfileCredentials(book, lambda exc: classify(exc).cls.value)
        if credentials is None:
            lookup = checked(CredentialResolver(profiles), False)
        else:
            given = credentials
            lookup = checked(lambda provider, agent, profile: given(provider), True)
        shared = self._state = chosen_state(state, self.config.state)  # no I/O
        if shared is not None and book.shared_lock is None:
            book.shared_lock = shared.refresh_locks().hold  # refreshes: once
        self._bus = None if shared is None else shared.breakers()
        health = HealthTracker(
            clock=clock, enabled=self.config.resilience.circuit_breakers, bus=self._bus
        )
        self._pipeline = Pipeline(
            self._registry,
            lambda: counter,
            self._adapters,
            lambda ctx, model: lookup(
                model.provider, ctx.caller.agent, ctx.caller.auth_profile
            ),
            health,
            clock,
        )
        prices = PriceBook(self.config)  # the price table file is read on first use
        self._ledger = LedgerSlot(ledger, self.config.ledger, lambda: home_dir)
        ledger_of, alert = self._ledger.get, AlertLog(on_budget_alert)
        local = Budgets(self.config.budgets, ledger=ledger_of, on_alert=alert)
        self._shared = (
            None if shared is None else shared.budgets(local, ledger_of, alert)
        )
        budgets = self._shared or local
        self._ledger.on_state = budgets.ledger_failed
        meter = Meter(prices)
        hooks = self._pipeline.hooks
        Governance(meter, self._ledger, budgets, book.owner).install(hooks)
        shares = CacheShares()
        self._router = Router(
            self._registry,
            self.config.routing,
            lambda: counter,
            Assessor(health, meter, budgets, shares),
        )
        Routing(self._router, shares).install(hooks, learn=may_route(self.config))
        self.observability = Observability(
            on_event, capture_content, hooks, self.config, self.health,
            lambda: self.budgets.status(), otel,
        )  # fmt: skip
        """Events' delivery (``stats()``, ``flush``), Prometheus ``metrics()``
        (`palyra._observe.Observability`)."""
        self.budgets = BudgetService(budgets, alert)
        """The budgets enforced on calls: add, remove, status
        (`palyra._governance.BudgetService`)."""
        self.tokens = TokenService(
            lambda: home_dir / "tokens.sqlite3",
            limiter=shared.rate_limiter() if shared else None,
        )
        """API tokens of the ``/v1`` surface: create, list, revoke, verify
        (`palyra._access.TokenService`)."""
        self.usage = UsageService(self._ledger, prices, self._upstream_of)
        """What calls used and cost: records, totals, runs and the ledger's
        health (`palyra._governance.UsageService`)."""
        sync_sleep = sleep or time.sleep
        send, asend = _exchanges(self._sync, self._async)
        self.auth = Auth(self.config, book, send, asend, sync_sleep, async_sleep)
        """Auth profiles: connect keys, sign in with OAuth, list, refresh,
        revoke (`palyra._auth.Auth`)."""
        self._cron: list[Scheduler] = []  # made on first use, shared by views
        self._gate: CallGate | None = None
        if credentials is None and may_use_profiles(self.config):
            hooks.after_failure.append(profiles.failed)
            hooks.after_completion.append(profiles.completed)
            eager = relies_on_profiles(self.config)
            window = self.config.auth.refresh_window
            self._gate = CallGate(
                book, eager, window, send, asend, sync_sleep, async_sleep
            )

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Palyra:
        """A client configured from a TOML file (see `PalyraConfig.from_file`)."""
        return cls(PalyraConfig.from_file(path), **kwargs)

    def bind(
        self,
        *,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Tags = None,
        auth_profile: str | None = None,
    ) -> Palyra:
        """A view of this client whose calls are for the given caller.

        The view shares everything with this client (connections, breakers,
        configuration) and costs next to nothing; closing either closes both.
        Values given here become the defaults of every call; a call's own
        arguments win, and its tags are merged over these. Views can be bound
        again. ``auth_profile`` makes calls to that profile's provider use it,
        over the configured choice (a scheduled job's calls do).

        Raises:
            InvalidRequestError: naming the bad field.
        """
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._caller = self._caller.merged(
            agent, session, principal, tags, auth_profile
        )
        return view

    @property
    def scheduler(self) -> Scheduler:
        """This client's job scheduler (`palyra.Scheduler`): jobs' calls
        run as their agent, with their auth profile, and its run records go
        to the ledger's database. Made on first use, with the ``[[jobs]]``
        of the configuration; `close` stops it.

        Raises:
            ScheduleError: a ``[[jobs]]`` entry's schedule is invalid, named
                (``jobs[0].cron``).
        """
        if not self._cron:
            with _CRON_LOCK:
                if not self._cron:
                    self._cron.append(self._new_scheduler())
        return self._cron[0]

    def _new_scheduler(self) -> Scheduler:
        # Loaded with the first use: a client that schedules nothing pays nothing.
        from ._cron import LedgerRunStore, Scheduler, add_configured

        def bind(agent: str | None, profile: str | None, principal: str) -> Palyra:
            return self.bind(agent=agent, principal=principal, auth_profile=profile)

        config = self.config

        def secrets() -> tuple[str, ...]:
            return configured_keys(config)

        made = Scheduler(
            bind=bind, store=LedgerRunStore(self._ledger.get), secrets=secrets
        )
        if self._state is not None:  # several processes: each fire runs once
            made.claim_fires(self._state.fire_claims().claim)
        add_configured(made, self.config.jobs)  # [[jobs]]: built-in maintenance
        return made

    # -- state -------------------------------------------------------------

    def health(self) -> list[ModelHealth]:
        """Circuit-breaker state and recent health of every (provider, model)
        this client has called: state, counters, success rate, median latency
        and the last error (redacted)."""
        return self._pipeline.health.snapshot()

    def models(self) -> list[ModelInfo]:
        """Every model in the registry, with resolved capabilities."""
        return self._registry.describe()

    def deterministic(self, provider: str | None = None) -> DeterministicBackend:
        """The scriptable backend of a deterministic provider.

        Args:
            provider: Provider id; the first deterministic provider when None.

        Returns:
            The provider's `DeterministicBackend` (``enqueue``, ``history``).
        """
        ids = [
            p.id
            for p in self.config.providers
            if p.kind == "deterministic" and provider in (None, p.id)
        ]
        if not ids:
            raise ConfigError(
                [("providers", f"no deterministic provider {provider!r}")]
            )
        adapter = cast("DeterministicAdapter", self._adapters.for_kind("deterministic"))
        return adapter.backend(ids[0])

    def _upstream_of(self, provider: str, model: str) -> tuple[str, str]:
        """The kind of ``provider`` and the upstream name of ``model``, for
        pricing a ledger record (what is gone from the config prices as is)."""
        found = self._registry.providers.get(provider)
        kind = found.kind if found is not None else ""
        entry = next(
            (m for m in self.config.models if m.id == model and m.provider == provider),
            None,
        )
        upstream = (entry.upstream_model or entry.id) if entry is not None else model
        return kind, upstream

    # -- lifecycle ---------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for the calls' events to reach the
        ``on_event`` callbacks; whether they all did. Streams dropped unread
        are reported first (their end is one of those events)."""
        self._sync.later.settle()
        return self.observability.flush(timeout)

    def close(self) -> None:
        """Stop the scheduler (if it was used), deliver the queued events,
        close the sync HTTP connections (the async ones need `aclose`) and
        the ledger's and the token file's (they reopen if used again)."""
        self._stop_scheduler()
        self._close_shared()
        self._sync.close()  # reports the streams dropped unread: events too
        self.observability.close()
        self._ledger.close()
        self.tokens.close()

    async def aclose(self) -> None:
        """Stop the scheduler, close every HTTP connection, sync and async,
        and the ledger's."""
        if self._cron:  # its runs may be on this very loop: not from it
            import asyncio

            await asyncio.to_thread(self._stop_scheduler)
        if self._shared is not None:  # hands settlements to Redis: a thread
            import asyncio

            await asyncio.to_thread(self._close_shared)
            await self._shared.link.aclose()
        if self._state is not None:
            await self._state.aclose_links()
        self._sync.close()
        self._ledger.close()
        self.tokens.close()
        await self._async.aclose()
        if self.observability.observer is not None:  # waits for its thread
            import asyncio

            await asyncio.to_thread(self.observability.close)

    def _close_shared(self) -> None:
        if self._shared is not None:
            self._shared.close()
        if self._bus is not None:
            self._bus.close()
        if self._state is not None:
            self._state.close_links()

    def _stop_scheduler(self) -> None:
        if self._cron and not self._cron[0].stop(10.0):
            logger.warning("palyra: scheduled runs still going as the client closed")

    def __enter__(self) -> Palyra:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Palyra:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        providers = ", ".join(p.id for p in self.config.providers)
        bound = _describe(self._caller)
        return (
            f"Palyra(providers=[{providers}], models={len(self.config.models)}{bound})"
        )


def _new_book(home: Path, vault: SecretStore) -> ProfileBook:
    # Every record read is checked whole: a damaged one makes the file
    # damaged (kept aside, reported by position only), never a raw error.
    return ProfileBook(ProfileFile(home, validate=check_record), vault)


def _exchanges(sync: SyncDriver, asynchronous: AsyncDriver) -> tuple[Any, Any]:
    """Auth's way to send a request: the drivers' network clients."""

    def send(step: Exchange) -> httpx.Response:
        return sync.exchange(step.request, step.secrets, step.budget)

    async def asend(step: Exchange) -> httpx.Response:
        return await asynchronous.exchange(step.request, step.secrets, step.budget)

    return send, asend


def _describe(caller: Caller) -> str:
    parts = [
        f", {name}={value!r}"
        for name in ("agent", "session", "principal", "auth_profile")
        if (value := getattr(caller, name)) is not None
    ]
    if caller.tags:
        parts.append(f", tags={dict(caller.tags)!r}")
    return "".join(parts)
