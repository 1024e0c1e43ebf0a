"""Reading shared budgets: status, alerts due without a call, and routing's
question "would this candidate be refused?" (no reservation made).

Status and evaluate read Redis in the calling thread (``client.budgets``
is not on a call's path; ``astatus`` runs it in a worker thread). A window
Redis does not hold yet is loaded from the ledger first, as a call would.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._exceptions import BudgetExceededError, LedgerError
from .._governance import (
    BudgetAlert,
    BudgetStatus,
    Cost,
    NormalizedUsage,
    Party,
    ScopeState,
    send_alert,
    status_of,
)
from .errors import StateUnavailableError
from .link import StateDown
from .parts import Need, alerts_from, refusal_for, starting_at_zero, text
from .scripts import ALERTS, FORGET, LOAD, PEEK
from .windows import Held, epoch_ms, from_units, held_for, to_units, values_key

if TYPE_CHECKING:
    from .budgets import SharedBudgets

__all__ = [
    "SEEN_FOR_S",
    "evaluate",
    "load",
    "load_need",
    "refuses",
    "status",
    "windows_of",
]

SEEN_FOR_S = 1.0
"""How long routing trusts what a reserve last heard of a window."""

_ZERO = Decimal(0)
VALUES = "return redis.call('SMEMBERS', KEYS[1])"


def windows_of(engine: SharedBudgets, now: datetime) -> list[Held]:
    """Every window open now: global and single-value budgets always,
    per-value budgets for each value any process has used in this period."""
    found = []
    for policy in engine.policies():
        if policy.per_value:
            period = held_for(engine.prefix, policy, "", _ZERO, now)
            members = engine.link.run(VALUES, [values_key(engine.prefix, period)], [])
            values = sorted(text(m) for m in members)
        else:
            values = [policy.value or "*"]
        found += [held_for(engine.prefix, policy, v, _ZERO, now) for v in values]
    return found


def _peek(
    engine: SharedBudgets, windows: list[Held], now: datetime
) -> tuple[list[Held], list[Any]]:
    """PEEK's answer per window, loading from the ledger those not held;
    a rolling per-value window whose keys expired (no use for its length
    and an hour) is dropped from its budget's values instead."""
    if not windows:
        return [], []
    args: list[Any] = [epoch_ms(now), *(w.roll_ms for w in windows)]
    answer = list(engine.link.run(PEEK, [w.key for w in windows], args))
    missing = [i for i, row in enumerate(answer) if int(row[0]) == 0]
    gone = {i for i in missing if _forgotten(engine, windows[i])}
    for i in missing:
        if i not in gone:
            engine.load(windows[i], now)
    kept = [w for i, w in enumerate(windows) if i not in gone]
    if missing:
        args = [epoch_ms(now), *(w.roll_ms for w in kept)]
        answer = (
            list(engine.link.run(PEEK, [w.key for w in kept], args)) if kept else []
        )
    return kept, answer


def _forgotten(engine: SharedBudgets, window: Held) -> bool:
    """A rolling per-value window Redis let expire: its value is dropped."""
    if not (window.roll_ms and window.policy.per_value):
        return False
    keys = [window.key, values_key(engine.prefix, window)]
    return int(engine.link.run(FORGET, keys, [window.value])) == 1


def status(engine: SharedBudgets) -> list[BudgetStatus]:
    """Spent, reserved and in flight per window, as Redis holds them.

    Raises:
        StateUnavailableError: Redis cannot be reached.
        LedgerError: a window to load could not be read, and its budget
            blocks on ledger errors.
    """
    now = engine.now()
    try:
        windows, rows = _peek(engine, windows_of(engine, now), now)
    except StateDown as exc:
        raise _down(engine, exc, "status") from None
    return [_status_of(w, row, now) for w, row in zip(windows, rows, strict=True)]


def _status_of(window: Held, row: Any, now: datetime) -> BudgetStatus:
    policy = window.policy
    _, spent, reserved, in_flight, oldest = row
    state = ScopeState(
        policy, window.value, window.start, window.end, from_units(policy, spent)
    )
    state.reserved = from_units(policy, reserved)
    state.in_flight = int(in_flight)
    if window.roll_ms:
        first = text(oldest)
        at = (
            [(datetime.fromtimestamp(int(float(first)) / 1000, now.tzinfo), _ZERO)]
            if first
            else []
        )
        state.entries = deque(at)  # only the oldest's time matters: resets_at
    return status_of(state, now)


def evaluate(engine: SharedBudgets) -> list[BudgetAlert]:
    """Claim and send the alerts due now (once across every process).

    Raises:
        StateUnavailableError: Redis cannot be reached.
    """
    now = engine.now()
    try:
        windows, _ = _peek(engine, windows_of(engine, now), now)  # loads
        claimed = engine.link.run(
            ALERTS, [w.key for w in windows], [w.alerts() for w in windows]
        )
    except StateDown as exc:
        raise _down(engine, exc, "evaluate") from None
    alerts = alerts_from(windows, claimed, now)
    for alert in alerts:
        send_alert(alert, engine.on_alert)
    return alerts


def _down(
    engine: SharedBudgets, exc: StateDown, operation: str
) -> StateUnavailableError:
    return StateUnavailableError(
        f"budgets cannot be read: {exc}",
        backend="redis",
        target=engine.link.target,
        operation=operation,
    )


def refuses(
    engine: SharedBudgets,
    party: Party,
    usage: NormalizedUsage,
    cost: Cost,
    where: tuple[str, str],
) -> str | None:
    """Why a budget would refuse this call, from what this process heard of
    each window in the last `SEEN_FOR_S` seconds (routing asks; nothing is
    reserved, and Redis is not asked on the call's path). An older view is
    not trusted: the call is tried, and its answer is the new view."""
    try:
        held = engine.plan(party, usage, cost, where, engine.now())
    except BudgetExceededError as exc:
        return exc.reason
    now = time.monotonic()
    for window in held:
        limit, seen = window.limit_units(), engine.seen.get(window.key)
        if not limit or seen is None or now - seen[1] > SEEN_FOR_S:
            continue
        if seen[0] + to_units(window.policy, window.amount) > int(limit):
            return "hard_limit"
    return None


def load(engine: SharedBudgets, window: Held, now: datetime) -> None:
    """Load ``window`` from the ledger into Redis (in this thread).

    Raises:
        StateDown: Redis cannot be reached.
        LedgerError: the ledger cannot be read, and the budget blocks then.
    """
    for _ in range(3):  # a read made before an UNLOAD is refused: again
        found = engine.spent_of(window)
        if isinstance(found, LedgerError):
            if window.policy.on_ledger_error == "block":
                raise found
            found = starting_at_zero(window, found, now)
        need = load_need(engine.prefix, window, found, now, ("", ""))
        assert need.script is not None
        if engine.link.run(need.script, need.keys, need.args) != -1:
            return


def load_need(
    prefix: str, window: Held, found: Any, now: datetime, where: tuple[str, str]
) -> Need:
    """The LOAD script for ``window`` from the ledger's answer ``found``
    (`SharedBudgets.spent_of`: spending, entries, read time, or the
    LedgerError that a ``block`` budget turns into a refusal)."""
    policy = window.policy
    if isinstance(found, LedgerError):
        if policy.on_ledger_error == "block":
            raise refusal_for(
                policy,
                window.value,
                now,
                "ledger_unavailable",
                window.amount,
                where,
                str(found),
            )
        found = starting_at_zero(window, found, now)
    spent, entries, read = found
    args: list[Any] = [to_units(policy, spent), window.ttl_ms, window.value]
    args += [read, window.roll_ms]
    for at, amount in entries or ():
        args += [epoch_ms(at), to_units(policy, amount)]
    return Need(LOAD, [window.key, values_key(prefix, window)], args)
