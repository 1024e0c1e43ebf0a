"""The budgets engine: reserve a call's worst case before it is sent, settle
to the actual afterwards, release on failure (issue 11).

Enforcement is atomic: a call reserves its worst case (prompt estimate plus
its most output) against every budget that applies to it, all or nothing,
under the per-scope locks taken in one fixed order (by policy id), so that
N concurrent calls can never together pass a hard limit and two calls can
never deadlock. Spent-to-date comes from the usage ledger the first time a
window is needed (the ledger is the truth across restarts); from then on
this process counts what it settles.

Alerts: after a settle, each ``alert_at`` threshold the window's spending has
reached is sent once per (budget, scope value, window) to ``on_alert`` (and
logged as a warning), outside every lock. Spending loaded from the ledger
counts: a window opened already past 80% sends its 50% and 80% alerts on its
first settle. A rolling window re-arms a threshold when its spending ages
back under it.

A ledger that cannot be read when a window opens: a budget with
``on_ledger_error = "block"`` refuses the call and tries again on the next
one; an ``allow`` budget starts the window at 0 (logged) and keeps it. While
the client reports failing writes (`Budgets.ledger_failed`), ``block``
budgets refuse every call.

The engine does no I/O but through the ``ledger`` callable; it builds no
pydantic model on the reserve/settle/release path.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .._config import BudgetConfig
from .._exceptions import (
    BudgetExceededError,
    ConfigError,
    InvalidRequestError,
    LedgerError,
)
from .budget_policy import BudgetAlert, BudgetPolicy, BudgetStatus, Party, as_policy
from .budget_state import (
    ScopeState,
    alerts_of,
    load_spent,
    refresh,
    refusal,
    send_alert,
    status_of,
)
from .ledger import UsageLedger
from .pricing import Cost
from .usage import NormalizedUsage

__all__ = ["Budgets", "Reservation"]

logger = logging.getLogger("palyra")
_ZERO = Decimal(0)
_SWEEP_AT = 1024  # states kept before idle states of past windows are dropped


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Reservation:
    """What one call holds: an amount per (budget, scope value, window).

    Opaque; give it back to `Budgets.settle` or `Budgets.release` (either,
    once: a second settle or release is a no-op).
    """

    __slots__ = ("_closed", "_entries")

    def __init__(self, entries: list[tuple[ScopeState, Decimal]]) -> None:
        self._entries = entries
        self._closed = False

    def _close(self) -> bool:
        """Mark the reservation given back; False if it already was. Called
        under its first state's lock, which every settle or release of it
        takes first, so two of them cannot both win."""
        if self._closed:
            return False
        self._closed = True
        return True

    def __repr__(self) -> str:
        held = ", ".join(f"{s.policy.id}[{s.value}]={a}" for s, a in self._entries)
        return f"Reservation({held}{', closed' if self._closed else ''})"


class Budgets:
    """Budget enforcement for one client; safe to share between threads.

    Args:
        policies: The budgets to enforce (as `add` takes them).
        ledger: Returns the usage ledger to read spent-to-date from (None:
            start every window at 0).
        on_alert: Called with each `BudgetAlert`, outside any lock; what it
            raises is logged and swallowed.
        now: The clock (UTC-aware), for tests.
    """

    def __init__(
        self,
        policies: Iterable[BudgetPolicy | BudgetConfig | Mapping[str, Any]] = (),
        *,
        ledger: Callable[[], UsageLedger | None] = lambda: None,
        on_alert: Callable[[BudgetAlert], None] | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._lock = threading.Lock()  # guards _policies and _states' shape
        self._policies: tuple[BudgetPolicy, ...] = ()  # sorted by id
        self._states: dict[tuple[str, str], ScopeState] = {}
        self._sweep_at = _SWEEP_AT
        self._ledger = ledger
        self._on_alert = on_alert
        self._now = now
        self._ledger_error: str | None = None
        for policy in policies:
            self.add(policy)

    def __repr__(self) -> str:
        return f"Budgets({[p.id for p in self._policies]})"

    @property
    def active(self) -> bool:
        """Whether there is any budget at all."""
        return bool(self._policies)

    def add(
        self, policy: BudgetPolicy | BudgetConfig | Mapping[str, Any]
    ) -> BudgetPolicy:
        """Enforce one more budget (a policy, a config, or its table).

        Raises:
            ConfigError: A bad table (paths ``budget.<field>``) or an id
                already in use (``budget.id``).
        """
        made = as_policy(policy)
        with self._lock:
            if any(p.id == made.id for p in self._policies):
                raise ConfigError([("budget.id", f"duplicate budget id {made.id!r}")])
            self._policies = tuple(sorted((*self._policies, made), key=_by_id))
        return made

    def remove(self, policy_id: str) -> None:
        """Stop enforcing a budget; its reservations in flight settle harmlessly.

        Raises:
            InvalidRequestError: No budget has that id.
        """
        with self._lock:
            kept = tuple(p for p in self._policies if p.id != policy_id)
            if len(kept) == len(self._policies):
                known = [p.id for p in self._policies]
                raise InvalidRequestError(f"no budget {policy_id!r}; known: {known}")
            self._policies = kept
            for key in [k for k in self._states if k[0] == policy_id]:
                del self._states[key]

    def policies(self) -> list[BudgetPolicy]:
        """The budgets enforced, by id."""
        return list(self._policies)

    @property
    def ledger_error(self) -> str | None:
        """The ledger's failure while writes fail (`ledger_failed`), else None."""
        return self._ledger_error

    def ledger_failed(self, error: str | None) -> None:
        """The ledger's state after a write: its error text while failing
        (budgets with ``on_ledger_error = "block"`` then refuse calls), None
        once it works again."""
        self._ledger_error = error

    def reserve(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
    ) -> Reservation | None:
        """Hold a call's worst case against every budget that applies to it.

        ``usage`` is the worst case (prompt estimate plus the most output)
        and ``cost`` its price for this candidate (``total`` None: unpriced).
        Returns None when no budget applies.

        Raises:
            BudgetExceededError: A budget refuses the call; nothing is then
                reserved anywhere.
        """
        picked, now = self._picked(party, usage, cost, (provider, model))
        if not picked:
            return None
        self._admit(picked, now, (provider, model))
        return Reservation(picked)

    def refuses(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
    ) -> str | None:
        """Why a budget would refuse this call now, reserving nothing:
        ``hard_limit``, ``unpriced`` or ``ledger_unavailable``; None when
        every budget would admit it. Routing asks this of each candidate.
        A racing reservation may change the answer; `reserve` decides."""
        if not self._policies:
            return None
        try:
            picked, now = self._picked(party, usage, cost, (provider, model))
        except BudgetExceededError as exc:
            return exc.reason
        for state, amount in picked:
            hard = state.policy.hard_limit
            if hard is None:
                continue
            # One lock at a time (never two: no order to keep): a rolling
            # window's spent_at drops expired entries, which needs the lock.
            with state.lock:
                held = state.spent_at(now) + state.reserved
            if held + amount > hard:
                return "hard_limit"
        return None

    def _picked(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        where: tuple[str, str],
    ) -> tuple[list[tuple[ScopeState, Decimal]], datetime]:
        """The scope states that apply to a call and its amount for each.

        Raises:
            BudgetExceededError: A budget refuses it whatever it has left: an
                unpriced call, or a ledger it cannot read.
        """
        picked: list[tuple[ScopeState, Decimal]] = []
        now = self._now()
        for policy in self._policies:
            value = policy.scope_value(party)
            if value is None:
                continue
            amount = policy.amount(usage, cost)
            failing = self._ledger_error
            if failing is not None and policy.on_ledger_error == "block":
                raise self._refusal(
                    policy, value, now, "ledger_unavailable", amount, where, failing
                )
            state = self._state(policy, value, now, where, amount)
            if amount is None:
                raise self._refusal(policy, value, now, "unpriced", None, where)
            picked.append((state, amount))
        return picked, now

    def settle(
        self, reservation: Reservation, usage: NormalizedUsage, cost: Cost
    ) -> None:
        """Replace a reservation by the call's actual ``usage`` and ``cost``, in
        the windows it was made in, then send the alerts now due.

        An actual the budget cannot price (an unpriced answer to a ``block``
        budget) counts as the amount reserved.
        """
        now = self._now()
        alerts: list[BudgetAlert] = []
        for i, (state, held) in enumerate(reservation._entries):
            actual = state.policy.amount(usage, cost)
            with state.lock:
                if i == 0 and not reservation._close():
                    return
                state.reserved -= held
                state.in_flight -= 1
                state.add(held if actual is None else actual, now)
                due = state.due_alerts(now)
                if due:
                    alerts.extend(alerts_of(state, due, now))
        for alert in alerts:
            self._send(alert)

    def evaluate(self) -> list[BudgetAlert]:
        """Send the alerts due now without a call: each budget's window is
        opened if it rolled over, its spending re-read from the ledger (other
        processes' calls included), and thresholds passed are sent (once per
        window, as calls send them). The alerts sent.

        Raises:
            LedgerError: a budget that blocks on ledger errors could not read it.
        """
        now = self._now()
        alerts: list[BudgetAlert] = []
        failed: LedgerError | None = None
        for policy in self._policies:
            if policy.per_value:
                with self._lock:
                    values = sorted({v for p, v in self._states if p == policy.id})
            else:
                values = [policy.value or "*"]
            for value in values:
                try:
                    alerts.extend(self._evaluate(policy, value, now))
                except LedgerError as exc:  # the other budgets are evaluated
                    if policy.on_ledger_error == "block":
                        failed = failed or exc
                    else:
                        logger.warning("budget %r not evaluated: %s", policy.id, exc)
        for alert in alerts:
            self._send(alert)
        if failed is not None:
            raise failed
        return alerts

    def _evaluate(
        self, policy: BudgetPolicy, value: str, now: datetime
    ) -> list[BudgetAlert]:
        state = self._state(policy, value, now, None)  # a new window opens
        spent, entries = load_spent(
            self._ledger(), policy, value, state.start, state.end, now
        )
        due = refresh(state, spent, entries, now)
        if not due:
            return []
        with state.lock:
            return alerts_of(state, due, now)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation: the call was not made, or failed unbilled."""
        for i, (state, held) in enumerate(reservation._entries):
            with state.lock:
                if i == 0 and not reservation._close():
                    return
                state.reserved -= held
                state.in_flight -= 1

    def status(self) -> list[BudgetStatus]:
        """Where each budget stands, by policy id then scope value: global and
        single-value budgets always (their window opened if need be),
        per-value budgets for the values seen in their current windows.

        Raises:
            LedgerError: A budget that blocks on ledger errors could not
                load its spent-to-date.
        """
        now = self._now()
        found: list[BudgetStatus] = []
        for policy in self._policies:
            if policy.per_value:
                with self._lock:
                    states = [
                        s
                        for (pid, _), s in self._states.items()
                        if pid == policy.id and s.covers(now)
                    ]
            else:
                value = policy.value or "*"
                states = [self._state(policy, value, now, None)]
            for state in sorted(states, key=lambda s: s.value):
                found.append(status_of(state, now))
        return found

    # -- internals -----------------------------------------------------------

    def _state(
        self,
        policy: BudgetPolicy,
        value: str,
        now: datetime,
        where: tuple[str, str] | None,
        amount: Decimal | None = None,
    ) -> ScopeState:
        """The state of ``policy`` for ``value`` in the window holding ``now``,
        opened (spent-to-date loaded from the ledger) the first time.

        Raises:
            BudgetExceededError: (with ``where``) the ledger cannot be read
                and the policy blocks then; LedgerError without ``where``.
        """
        state = self._states.get((policy.id, value))
        if state is not None and state.covers(now):
            return state
        start, end = (
            policy.window.bounds(now) if policy.window.calendar else (None, None)
        )
        try:
            spent, entries = load_spent(self._ledger(), policy, value, start, end, now)
        except LedgerError as exc:
            if policy.on_ledger_error == "block":
                if where is None:
                    raise
                raise self._refusal(
                    policy, value, now, "ledger_unavailable", amount, where, str(exc)
                ) from exc
            logger.warning("budget %r starts at 0: %s", policy.id, exc)
            spent = _ZERO
            entries = deque() if policy.window.duration is not None else None
        return self._install(ScopeState(policy, value, start, end, spent, entries), now)

    def _install(self, new: ScopeState, now: datetime) -> ScopeState:
        # The ledger was read outside the lock: another thread may have
        # installed the same window meanwhile, and its state wins.
        key = (new.policy.id, new.value)
        with self._lock:
            state = self._states.get(key)
            if state is not None and state.covers(now):
                return state
            if new.policy not in self._policies:
                return new  # removed meanwhile: keep nothing of it
            self._states[key] = new
            if len(self._states) > self._sweep_at:
                self._sweep(now)
        return new

    def _sweep(self, now: datetime) -> None:
        """Forget idle states of past windows and empty rolling ones (under
        ``_lock``); they are loaded again from the ledger if needed."""
        for key, state in list(self._states.items()):
            with state.lock:
                stale = not state.covers(now) or (
                    state.entries is not None and not state.spent_at(now)
                )
                if stale and state.idle():
                    del self._states[key]
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._states))

    def _admit(
        self,
        picked: list[tuple[ScopeState, Decimal]],
        now: datetime,
        where: tuple[str, str],
    ) -> None:
        """Reserve every amount, or none when one would pass its hard limit.
        ``picked`` is in policy id order, so the locks are always taken in
        one order."""
        taken: list[threading.Lock] = []
        try:
            for state, _ in picked:
                state.lock.acquire()
                taken.append(state.lock)
            for state, amount in picked:
                hard = state.policy.hard_limit
                if (
                    hard is not None
                    and state.spent_at(now) + state.reserved + amount > hard
                ):
                    raise refusal(state, now, "hard_limit", amount, where)
            for state, amount in picked:
                state.reserved += amount
                state.in_flight += 1
        finally:
            for lock in reversed(taken):
                lock.release()

    def _refusal(
        self,
        policy: BudgetPolicy,
        value: str,
        now: datetime,
        reason: str,
        amount: Decimal | None,
        where: tuple[str, str],
        detail: str = "",
    ) -> BudgetExceededError:
        state = self._states.get((policy.id, value))
        if state is None or not state.covers(now):
            # No window open (the ledger could not be read): report it empty.
            start, end = policy.window.bounds(now)
            state = ScopeState(policy, value, start, end, _ZERO)
        with state.lock:
            return refusal(state, now, reason, amount, where, detail)

    def _send(self, alert: BudgetAlert) -> None:
        send_alert(alert, self._on_alert)


def _by_id(policy: BudgetPolicy) -> str:
    return policy.id
