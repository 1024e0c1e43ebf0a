"""``client.budgets``: add, remove and inspect the client's budgets.

The policies start as the config's ``[[budgets]]``; `add` and `remove`
change them for this client (and every view of it) while it runs, and the
config file is left as it is.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .._config import BudgetConfig
from .budget_policy import BudgetAlert, BudgetPolicy, BudgetStatus, Party
from .pricing import Cost
from .usage import NormalizedUsage

__all__ = ["AlertLog", "BudgetEngine", "BudgetService"]

_KEPT_ALERTS = 200


class AlertLog:
    """The budget alerts this process sent, newest last (the last 200): a
    budget engine's ``on_alert``, which then passes each to the app's own
    (``on_budget_alert``)."""

    def __init__(self, then: Callable[[BudgetAlert], None] | None = None) -> None:
        self._then = then
        self._alerts: deque[BudgetAlert] = deque(maxlen=_KEPT_ALERTS)
        self._lock = threading.Lock()

    def __call__(self, alert: BudgetAlert) -> None:
        with self._lock:
            self._alerts.append(alert)
        if self._then is not None:
            self._then(alert)  # its failure is logged by whoever sent the alert

    def recent(self, limit: int) -> list[BudgetAlert]:
        """Up to ``limit`` alerts, newest first."""
        with self._lock:
            kept = list(self._alerts)
        return kept[::-1][: max(limit, 0)]


class BudgetEngine(Protocol):
    """What ``client.budgets`` and routing need of a budget engine: the
    in-process `Budgets`, or the shared one on Redis (``palyra._state``)."""

    @property
    def active(self) -> bool: ...

    def add(
        self, policy: BudgetPolicy | BudgetConfig | Mapping[str, Any]
    ) -> BudgetPolicy: ...

    def remove(self, policy_id: str) -> None: ...

    def policies(self) -> list[BudgetPolicy]: ...

    def status(self) -> list[BudgetStatus]: ...

    def evaluate(self) -> list[BudgetAlert]: ...

    def refuses(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
    ) -> str | None: ...


class BudgetService:
    """The client's budgets: ``client.budgets``."""

    def __init__(self, engine: BudgetEngine, alerts: AlertLog | None = None) -> None:
        self._engine = engine
        self._alerts = alerts or AlertLog()

    def add(
        self,
        policy: BudgetPolicy | BudgetConfig | Mapping[str, Any] | None = None,
        /,
        **fields: Any,
    ) -> BudgetPolicy:
        """Add a budget, enforced from the next call on.

        Pass a `BudgetConfig`, a mapping shaped like a ``[[budgets]]`` table,
        or its fields as keywords::

            client.budgets.add(id="daily", scope="agent", window="day",
                               tz="Europe/Paris", soft_limit="4", hard_limit="5")

        Raises:
            ConfigError: a bad field, named (``budget.hard_limit: ...``), or an
                id already in use.
        """
        if policy is None:
            policy = fields
        elif fields:
            raise TypeError("give a policy or its fields as keywords, not both")
        return self._engine.add(policy)

    def remove(self, policy_id: str) -> None:
        """Stop enforcing a budget (what it reserved is let go as calls end).

        Raises:
            InvalidRequestError: no budget has this id.
        """
        self._engine.remove(policy_id)

    def policies(self) -> list[BudgetPolicy]:
        """The budgets enforced now, in the order they were added."""
        return self._engine.policies()

    def status(self) -> list[BudgetStatus]:
        """Spent, reserved, remaining and ``resets_at`` per budget and scope
        value (opening a window may read the ledger)."""
        return self._engine.status()

    def evaluate(self) -> list[BudgetAlert]:
        """Send the alerts due now, with no call needed: windows that rolled
        over are opened, spending is re-read from the ledger (other
        processes' calls included), and each threshold passed is sent once
        per window, to ``on_budget_alert`` and the log. The ``budget_alerts``
        job of the scheduler calls it. The alerts sent.

        Raises:
            LedgerError: a budget that blocks on ledger errors could not read it.
        """
        return self._engine.evaluate()

    def alerts(self, limit: int = 50) -> list[BudgetAlert]:
        """The alerts this client's process sent lately, newest first (the
        last 200 kept): each threshold a budget's spending passed, once per
        window. With budgets shared on Redis, each alert is sent by one
        process of the fleet, so another process's are not here: keep them
        with ``on_budget_alert``."""
        return self._alerts.recent(limit)

    async def astatus(self) -> list[BudgetStatus]:
        """Async `status` (the ledger is read in a worker thread)."""
        import asyncio  # the app's loop has loaded it already

        return await asyncio.to_thread(self._engine.status)

    def __repr__(self) -> str:
        return f"<client.budgets {[p.id for p in self._engine.policies()]}>"
