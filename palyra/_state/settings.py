"""`RedisState`: the object form of ``[state] backend = "redis"``, what it
makes (the shared budget engine, the breaker bus), and the choice a client
makes from ``Palyra(state=...)`` and its config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from .._config import StateConfig
from .._governance import BudgetAlert, Budgets, UsageLedger
from .breakers import RedisBreakers
from .budgets import SharedBudgets
from .cron import RedisFireClaims
from .limits import RedisRateLimiter
from .link import RedisLink
from .locks import RefreshLocks

__all__ = ["RedisState", "chosen_state"]


class RedisState:
    """Shared state on one Redis: budget reservations and spend, and circuit
    breakers, for every process and host that points at it
    (``pip install 'palyra[redis]'``).

    Nothing connects until a call needs it. Its fields are those of the
    ``[state]`` table (see `StateConfig`); ``password`` may be given here
    (from your own secret store), and is never shown.

    Args:
        url: ``redis://host:6379/0`` (``rediss://`` for TLS, ``unix:///path``),
            without a password in it.
        password: Redis' password, if any.
        password_env: Or the environment variable holding it.
        key_prefix: Prefix of every key palyra writes.
        connect_timeout: Seconds to connect.
        timeout: Seconds each command may take.
        on_unavailable: ``"fail_closed"`` or ``"local_bound"`` (default:
            ``fail_closed`` when a budget has a USD hard limit).
        local_fraction: Share of each hard limit one process may use alone
            while Redis is down (``local_bound``).
        reservation_margin: Seconds a reservation outlives its call's deadline.
        retry_interval: Seconds between tries of a Redis found down.

    Raises:
        ConfigError: a bad field, named (``state.url: ...``).
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        password_env: str | None = None,
        key_prefix: str = "palyra:",
        connect_timeout: float = 1.0,
        timeout: float = 0.5,
        on_unavailable: Literal["fail_closed", "local_bound"] | None = None,
        local_fraction: float = 0.1,
        reservation_margin: float = 30.0,
        retry_interval: float = 1.0,
    ) -> None:
        self.config = StateConfig(
            backend="redis",
            url=url,
            password_env=password_env,
            key_prefix=key_prefix,
            connect_timeout=connect_timeout,
            timeout=timeout,
            on_unavailable=on_unavailable,
            local_fraction=local_fraction,
            reservation_margin=reservation_margin,
            retry_interval=retry_interval,
        )
        self._password = password
        self._links: list[RedisLink] = []  # made for others, closed with us

    @classmethod
    def from_config(cls, config: StateConfig) -> RedisState:
        """The state a ``[state]`` table with ``backend = "redis"`` describes."""
        made = object.__new__(cls)
        made.config, made._password = config, None
        made._links = []
        return made

    def __repr__(self) -> str:
        cfg = self.config
        return f"RedisState({cfg.url!r}, key_prefix={cfg.key_prefix!r})"

    def budgets(
        self,
        local: Budgets,
        ledger: Callable[[], UsageLedger | None],
        on_alert: Callable[[BudgetAlert], None] | None,
    ) -> SharedBudgets:
        """The budget engine over this Redis, enforcing ``local``'s policies."""
        cfg = self.config
        return SharedBudgets(
            local,
            self.link(),
            prefix=cfg.key_prefix,
            ledger=ledger,
            on_unavailable=cfg.on_unavailable,
            local_fraction=cfg.local_fraction,
            margin=cfg.reservation_margin,
            retry_interval=cfg.retry_interval,
            on_alert=on_alert,
        )

    def breakers(self) -> RedisBreakers:
        """The breaker bus over this Redis."""
        return RedisBreakers(self.link(), self.config.key_prefix)

    def fire_claims(self) -> RedisFireClaims:
        """Scheduled jobs' fire claims over this Redis (its link closed by
        `close_links`)."""
        return RedisFireClaims(self._kept(self.link()), self.config.key_prefix)

    def rate_limiter(self) -> RedisRateLimiter:
        """The ``/v1`` tokens' rate limits over this Redis (its link closed
        by `close_links`)."""
        return RedisRateLimiter(self._kept(self.link()), self.config.key_prefix)

    def refresh_locks(self) -> RefreshLocks:
        """OAuth refresh locks over this Redis (its link closed by
        `close_links`)."""
        return RefreshLocks(self._kept(self.link()), self.config.key_prefix)

    def _kept(self, link: RedisLink) -> RedisLink:
        self._links.append(link)
        return link

    def close_links(self) -> None:
        """Close the links of `fire_claims` and `rate_limiter` (the client's
        ``close``; they reconnect if used again)."""
        for link in self._links:
            link.close()

    async def aclose_links(self) -> None:
        """`close_links`, and their asyncio clients on this loop."""
        for link in self._links:
            await link.aclose()
            link.close()

    def link(self) -> RedisLink:
        """A new connection to this Redis (connects on first use)."""
        cfg = self.config
        assert cfg.url is not None
        return RedisLink(
            cfg.url,
            password=self._password,
            password_env=cfg.password_env,
            connect_timeout=cfg.connect_timeout,
            timeout=cfg.timeout,
            retry_interval=cfg.retry_interval,
        )


def chosen_state(given: Any, config: StateConfig) -> RedisState | None:
    """The shared state ``Palyra(state=)`` and ``[state]`` ask for, or None
    to keep it in this process.

    Raises:
        TypeError: ``state=`` is not None, ``"memory"`` or a `RedisState`.
    """
    if isinstance(given, RedisState):
        return given
    if given == "memory":
        return None
    if given is None:
        return RedisState.from_config(config) if config.backend == "redis" else None
    raise TypeError(
        f"state= is None, 'memory' or a palyra.RedisState, not {type(given).__name__}"
    )
