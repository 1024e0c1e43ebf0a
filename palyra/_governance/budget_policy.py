"""What a budget is, and what the engine reports: `BudgetPolicy`, `Party`,
`BudgetAlert`, `BudgetStatus`.

A `BudgetPolicy` is a `BudgetConfig` made ready for the hot path: its
window parsed, its defaults resolved, its estimate price a `PriceEntry`, and
the lookup of a call's scope value reduced to one attribute read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from .._config import BudgetConfig
from .._exceptions import ConfigError
from .pricing import Cost, PriceEntry, cost_of, entry_from_config
from .usage import NormalizedUsage
from .windows import Window

__all__ = [
    "GLOBAL",
    "BudgetAlert",
    "BudgetPolicy",
    "BudgetStatus",
    "Party",
    "as_policy",
]

GLOBAL = "*"
"""The scope value of a global budget."""
_ZERO = Decimal(0)


class Party(Protocol):
    """Who makes a call, as budgets see it (the client passes its own caller)."""

    @property
    def agent(self) -> str | None: ...
    @property
    def session(self) -> str | None: ...
    @property
    def principal(self) -> str | None: ...
    @property
    def tags(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class BudgetPolicy:
    """One budget, ready to enforce (build it with `from_config`).

    Attributes:
        id, metric, scope, value, soft_limit, hard_limit, alert_at: As in
            `BudgetConfig`.
        window: The parsed `Window`.
        unpriced: ``block``, ``allow`` or ``estimate`` (default resolved).
        on_ledger_error: ``block`` or ``allow`` (default resolved).
        estimate_price: The price of unpriced calls with ``estimate``.
    """

    id: str
    metric: Literal["usd", "tokens"]
    scope: str
    value: str | None
    window: Window
    soft_limit: Decimal | None
    hard_limit: Decimal | None
    alert_at: tuple[Decimal, ...]
    unpriced: Literal["block", "allow", "estimate"]
    on_ledger_error: Literal["block", "allow"]
    estimate_price: PriceEntry | None = None
    # The Party attribute (or tag key) that holds the scope value.
    _attr: str = field(init=False, repr=False)
    _tag: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tag = self.scope.startswith("tag:")
        object.__setattr__(self, "_tag", tag)
        object.__setattr__(self, "_attr", self.scope[4:] if tag else self.scope)

    @classmethod
    def from_config(cls, cfg: BudgetConfig) -> BudgetPolicy:
        """The policy of one ``[[budgets]]`` entry."""
        price = None
        if cfg.estimate_price is not None:
            price = entry_from_config("*", None, cfg.estimate_price)
        return cls(
            id=cfg.id,
            metric=cfg.metric,
            scope=cfg.scope,
            value=cfg.value,
            window=Window(cfg.window, cfg.tz),
            soft_limit=cfg.soft_limit,
            hard_limit=cfg.hard_limit,
            alert_at=cfg.alert_at,
            unpriced=cfg.resolved_unpriced,
            on_ledger_error=cfg.resolved_on_ledger_error,
            estimate_price=price,
        )

    @property
    def per_value(self) -> bool:
        """Whether every scope value has a limit of its own."""
        return self.scope != "global" and self.value is None

    def scope_value(self, party: Party) -> str | None:
        """The scope value this call counts against, or None when the policy
        does not apply to it (no value, or not the policy's one)."""
        attr = self._attr
        if attr == "global":
            return GLOBAL
        found = party.tags.get(attr) if self._tag else getattr(party, attr)
        if found is None or (self.value is not None and found != self.value):
            return None
        return found

    def filters(self, value: str) -> dict[str, Any]:
        """The ledger filters of the calls counted against ``value``."""
        if self._attr == "global":
            return {}
        if self._tag:
            return {"tag": (self._attr, value)}
        return {self._attr: value}

    def amount(self, usage: NormalizedUsage, cost: Cost) -> Decimal | None:
        """What a call counts against this policy; None when it is unpriced
        and the policy blocks unpriced calls."""
        if self.metric == "tokens":
            return Decimal(usage.input_total + usage.output)
        total = cost.total
        if total is not None and not cost.unpriced:
            return total
        if self.unpriced == "allow":
            return _ZERO
        if self.unpriced == "estimate" and self.estimate_price is not None:
            return cost_of(usage, self.estimate_price).total
        return None

    @property
    def alert_limit(self) -> Decimal | None:
        """The limit ``alert_at`` are fractions of: soft, else hard."""
        return self.soft_limit if self.soft_limit is not None else self.hard_limit


@dataclass(frozen=True, kw_only=True)
class BudgetAlert:
    """A budget's spending passed one of its ``alert_at`` thresholds (sent
    once per threshold and window to ``on_alert``).

    Attributes:
        policy, metric, scope, scope_value: Which budget, for whom.
        threshold: The fraction passed (``Decimal("0.8")``).
        limit: The limit it is a fraction of (soft, else hard).
        spent: Spent in the window when it was passed.
        window_start: Start of the window (None: lifetime).
        resets_at: When the window ends (None: never, or rolling).
        at: When the alert was raised.
    """

    policy: str
    metric: str
    scope: str
    scope_value: str
    threshold: Decimal
    limit: Decimal
    spent: Decimal
    window_start: datetime | None
    resets_at: datetime | None
    at: datetime


@dataclass(frozen=True, kw_only=True)
class BudgetStatus:
    """Where one budget (for one scope value) stands now.

    Attributes:
        policy, metric, scope, scope_value: Which budget, for whom.
        window: The window, described (``"day in Europe/Paris"``).
        window_start, resets_at: Its bounds (None: open).
        spent: Settled spending in the window.
        reserved: Held by calls in flight.
        remaining: ``hard_limit - spent - reserved``, never below 0; None
            without a hard limit.
        soft_limit, hard_limit: The limits.
        in_flight: Calls holding a reservation.
        state: ``ok``, ``soft_limit`` (spent reached the soft limit) or
            ``hard_limit`` (spent reached the hard limit).
    """

    policy: str
    metric: str
    scope: str
    scope_value: str
    window: str
    window_start: datetime | None
    resets_at: datetime | None
    spent: Decimal
    reserved: Decimal
    remaining: Decimal | None
    soft_limit: Decimal | None
    hard_limit: Decimal | None
    in_flight: int
    state: Literal["ok", "soft_limit", "hard_limit"]


def as_policy(policy: BudgetPolicy | BudgetConfig | Mapping[str, Any]) -> BudgetPolicy:
    """A policy from a policy, a config or a table (errors: ``budget.<field>``)."""
    if isinstance(policy, BudgetPolicy):
        return policy
    if isinstance(policy, BudgetConfig):
        return BudgetPolicy.from_config(policy)
    if not isinstance(policy, Mapping):
        raise ConfigError([("budget", "must be a BudgetPolicy, BudgetConfig or table")])
    try:
        cfg = BudgetConfig(**{str(k): v for k, v in policy.items()})
    except ConfigError as exc:
        errors = [(f"budget.{p}" if p else "budget", m) for p, m in exc.errors]
    else:
        return BudgetPolicy.from_config(cfg)
    raise ConfigError(errors)
