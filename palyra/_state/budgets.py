"""Budgets shared by every process on one Redis (issue 16).

`SharedBudgets` keeps the policies in the client's own `Budgets` engine and
the numbers on Redis: a call's worst case is reserved against every window
that applies to it in one atomic script (all or nothing, so N processes x M
concurrent calls can never together pass a hard limit), and settled or
released afterwards through the `Settler`. A window Redis does not hold yet
(first use, or a Redis that restarted empty) is rebuilt from the ledger.

The reserving logic is written once, as a generator of `Need`s (a script to
run, or a window to read from the ledger); `SharedBudgets.reserve` drives it
in a thread, `areserve` on an event loop with redis-py's asyncio client.

When Redis cannot be reached: ``fail_closed`` raises
`StateUnavailableError` (nothing is sent); ``local_bound`` admits the call
against this process's own reservations, each hard limit cut to
``local_fraction`` of itself, and the spending is settled to Redis once it
is back.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .._exceptions import LedgerError
from .._governance import (
    BudgetAlert,
    BudgetPolicy,
    Budgets,
    BudgetStatus,
    Cost,
    MemoryLedger,
    NormalizedUsage,
    Party,
    UsageLedger,
    load_spent,
    new_record_id,
    send_alert,
)
from . import reboot, views
from .batch import AsyncBatcher, Batcher
from .errors import StateUnavailableError
from .link import RedisLink, StateDown
from .parts import (
    Need,
    SharedReservation,
    alerts_from,
    cut,
    refusal_for,
    refused_at,
    text,
)
from .scripts import RESERVE
from .settler import Live, Settlement, Settler
from .windows import Held, epoch_ms, from_units, held_for, to_units

__all__ = ["SharedBudgets"]

_ZERO = Decimal(0)


_clock = time.monotonic


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SharedBudgets:
    """The budget engine of a client with ``[state] backend = "redis"``.

    Args:
        local: The client's `Budgets`: its policies are the ones enforced.
        link: The Redis.
        prefix: Key prefix.
        ledger: The usage ledger windows are rebuilt from.
        on_unavailable: ``fail_closed``, ``local_bound``, or None (fail
            closed when a budget has a USD hard limit).
        local_fraction: Share of each hard limit a process may use alone.
        margin: Seconds a reservation outlives its call's deadline.
        retry_interval: Seconds between tries of a Redis found down.
        on_alert: Called with each alert (claimed once across processes).
        now: The clock, for tests.
    """

    def __init__(
        self,
        local: Budgets,
        link: RedisLink,
        *,
        prefix: str,
        ledger: Callable[[], UsageLedger | None],
        on_unavailable: str | None,
        local_fraction: float,
        margin: float,
        retry_interval: float,
        on_alert: Callable[[BudgetAlert], None] | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.local = local
        self.link = link
        self.prefix = prefix
        self._ledger = ledger
        self._mode = on_unavailable
        self._fraction = Decimal(str(local_fraction))
        self._margin_ms = int(margin * 1000)
        self.on_alert = on_alert
        self.now = now
        # window key -> (spent + reserved in units, when): routing's view
        self.seen: dict[str, tuple[int, float]] = {}
        self._fallback = Budgets(now=now)
        self._fallback_lock = threading.Lock()
        self.batch = Batcher(link)  # concurrent reserves: one round trip
        self._abatches: weakref.WeakKeyDictionary[Any, AsyncBatcher] = (
            weakref.WeakKeyDictionary()
        )
        self._quiet_ms = reboot.quiet_ms(link.round_trip_bound)
        self.settler = Settler(
            link,
            retry_interval,
            lambda: epoch_ms(self.now()),
            self.tick,
            done_key=f"{prefix}done",
            rebuildable=self._rebuildable,
        )
        self.boot = ""  # the boot token last seen ("": none yet)
        self.reasserted = 0  # reservations put back on a Redis that lost them
        self.admitted_locally = 0  # calls local_bound admitted while Redis was down
        self.refused_unavailable = 0  # calls fail_closed refused

    def __repr__(self) -> str:
        return f"SharedBudgets({[p.id for p in self.local.policies()]}, {self.link})"

    # -- the policies: the local engine's ------------------------------------

    @property
    def active(self) -> bool:
        """Whether there is any budget at all."""
        return self.local.active

    def add(self, policy: Any) -> BudgetPolicy:
        """Enforce one more budget (see `Budgets.add`)."""
        return self.local.add(policy)

    def remove(self, policy_id: str) -> None:
        """Stop enforcing a budget (see `Budgets.remove`)."""
        self.local.remove(policy_id)
        with self._fallback_lock:
            if any(p.id == policy_id for p in self._fallback.policies()):
                self._fallback.remove(policy_id)

    def policies(self) -> list[BudgetPolicy]:
        """The budgets enforced."""
        return self.local.policies()

    def ledger_failed(self, error: str | None) -> None:
        """The ledger's state after a write (see `Budgets.ledger_failed`)."""
        self.local.ledger_failed(error)

    @property
    def fail_mode(self) -> str:
        """``fail_closed`` or ``local_bound``, as it applies now."""
        if self._mode is not None:
            return self._mode
        usd_hard = any(
            p.metric == "usd" and p.hard_limit is not None
            for p in self.local.policies()
        )
        return "fail_closed" if usd_hard else "local_bound"

    # -- reading ---------------------------------------------------------------

    def status(self) -> list[BudgetStatus]:
        """Where each budget stands on Redis (see `palyra._state.views`)."""
        return views.status(self)

    def evaluate(self) -> list[BudgetAlert]:
        """Send the alerts due now, claimed once across every process."""
        return views.evaluate(self)

    def refuses(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
    ) -> str | None:
        """Why a budget would refuse this call (`views.refuses`)."""
        return views.refuses(self, party, usage, cost, (provider, model))

    def load(self, window: Held, now: datetime) -> None:
        """Load ``window`` from the ledger into Redis (`views.load`)."""
        views.load(self, window, now)

    # -- reserve -------------------------------------------------------------

    def reserve(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
        deadline_left: float | None = None,
    ) -> SharedReservation | None:
        """Hold a call's worst case on Redis (in this thread).

        Raises:
            BudgetExceededError: A budget refuses the call.
            StateUnavailableError: Redis is down and the policy fails closed.
        """
        flow = self._reserving(party, usage, cost, (provider, model), deadline_left)
        try:
            need = next(flow)
            while True:
                try:
                    answer = self._do(need)
                except Exception as exc:
                    need = flow.throw(exc)
                else:
                    need = flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def areserve(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
        deadline_left: float | None = None,
    ) -> SharedReservation | None:
        """`reserve` on the running loop: Redis through its asyncio client,
        the ledger (a window's first use) in a worker thread."""
        flow = self._reserving(party, usage, cost, (provider, model), deadline_left)
        try:
            need = next(flow)
            while True:
                try:
                    answer = await self._ado(need)
                except Exception as exc:
                    need = flow.throw(exc)
                else:
                    need = flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _do(self, need: Need) -> Any:
        if need.script is None:
            assert need.held is not None
            return self.spent_of(need.held)
        return self.batch.run(need.script, need.keys, need.args)

    async def _ado(self, need: Need) -> Any:
        import asyncio  # here: a client with no async call never loads it

        if need.script is None:
            return await asyncio.to_thread(self._do, need)
        loop = asyncio.get_running_loop()
        batch = self._abatches.get(loop)
        if batch is None:
            batch = self._abatches[loop] = AsyncBatcher(self.link)
        return await batch.run(need.script, need.keys, need.args)

    def _reserving(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        where: tuple[str, str],
        deadline_left: float | None,
    ) -> Generator[Need, Any, SharedReservation | None]:
        """The reserving logic, once for both drivers."""
        now = self.now()
        held = self.plan(party, usage, cost, where, now)
        if not held:
            return None
        rid = new_record_id()
        lease = int(max(deadline_left or 0.0, 0.0) * 1000) + self._margin_ms
        now_ms = epoch_ms(now)
        amounts = [to_units(h.policy, h.amount) for h in held]
        keys = [h.key for h in held]
        try:
            for _ in range(len(held) + 3):  # a reboot once, each window once
                args: list[Any] = [now_ms, rid, now_ms + lease, self.boot]
                args += [new_record_id(), self._quiet_ms]
                for h, units in zip(held, amounts, strict=True):
                    args += [units, h.limit_units(), h.roll_ms, h.ttl_ms]
                answer = yield Need(RESERVE, [*keys, *self.boot_keys()], args)
                kind, boot = text(answer[0]), text(answer[1])
                if kind == "boot":  # Redis lost its data: put ours back first
                    self.boot = boot
                    yield from reboot.reasserting(self)
                    continue
                self.boot = boot
                if kind == "ok":
                    self._saw(keys, answer[2:])
                    live = Live(keys, amounts, now_ms + lease, lease)
                    self.settler.track(rid, live)
                    return SharedReservation(rid, held)
                if kind == "quiet":
                    raise StateDown(
                        f"Redis at {self.link.target} restarted without its data;"
                        " calls wait for every process to re-assert its"
                        f" reservations ({int(answer[2])} ms more)"
                    )
                window = held[int(answer[2]) - 1]
                if kind == "refused":
                    spent = from_units(window.policy, answer[3])
                    reserved = from_units(window.policy, answer[4])
                    self.seen[window.key] = (int(answer[3]) + int(answer[4]), _clock())
                    raise refused_at(window, now, spent, reserved, where)
                found = yield Need(None, [], [], window)
                yield views.load_need(self.prefix, window, found, now, where)
        except StateDown as exc:
            return self._unavailable(exc, party, usage, cost, where)
        raise StateUnavailableError(  # a window that would not stay loaded
            f"Redis at {self.link.target} lost budget windows while reserving",
            backend="redis",
            target=self.link.target,
            operation="reserve",
            provider=where[0],
            model=where[1],
        )

    def _saw(self, keys: list[str], totals: list[Any]) -> None:
        at = _clock()
        for i, key in enumerate(keys):
            self.seen[key] = (int(totals[2 * i]) + int(totals[2 * i + 1]), at)

    def _rebuildable(self) -> bool:
        """Whether the ledger holds every process's calls (a memory ledger
        holds this one's only)."""
        ledger = self._ledger()
        return ledger is not None and not isinstance(ledger, MemoryLedger)

    def boot_keys(self) -> list[str]:
        """The boot token's key and the quiet key (see `palyra._state.reboot`)."""
        return [f"{self.prefix}boot", f"{self.prefix}quiet"]

    def tick(self) -> None:
        """Every second, from the settler's thread (`reboot.tick`)."""
        reboot.tick(self)

    def plan(
        self,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        where: tuple[str, str],
        now: datetime,
    ) -> list[Held]:
        """The windows that apply to a call (policy id order) and its amounts.

        Raises:
            BudgetExceededError: an unpriced call to a budget that blocks
                them, or a failing ledger to one that blocks then.
        """
        held: list[Held] = []
        failing = self.local.ledger_error
        for policy in self.local.policies():
            value = policy.scope_value(party)
            if value is None:
                continue
            amount = policy.amount(usage, cost)
            if failing is not None and policy.on_ledger_error == "block":
                raise refusal_for(
                    policy, value, now, "ledger_unavailable", amount, where, failing
                )
            if amount is None:
                raise refusal_for(policy, value, now, "unpriced", None, where)
            held.append(held_for(self.prefix, policy, value, amount, now))
        return held

    def spent_of(self, window: Held) -> tuple[Decimal, Any, int] | LedgerError:
        """The ledger's spending in ``window``, and when the read began (a
        LedgerError is returned, for the reserving logic to decide on)."""
        now = self.now()
        try:
            spent, entries = load_spent(
                self._ledger(),
                window.policy,
                window.value,
                window.start,
                window.end,
                now,
            )
        except LedgerError as exc:
            return exc
        return spent, entries, epoch_ms(now)

    # -- when Redis is down ----------------------------------------------------

    def _unavailable(
        self,
        exc: StateDown,
        party: Party,
        usage: NormalizedUsage,
        cost: Cost,
        where: tuple[str, str],
    ) -> SharedReservation | None:
        if self.fail_mode == "fail_closed":
            self.refused_unavailable += 1
            raise StateUnavailableError(
                f"budgets cannot reserve: {exc}; on_unavailable is 'fail_closed',"
                " so nothing was sent",
                backend="redis",
                target=self.link.target,
                operation="reserve",
                provider=where[0],
                model=where[1],
            ) from None
        local = self._fallback_engine().reserve(
            party, usage, cost, provider=where[0], model=where[1]
        )
        self.admitted_locally += 1
        held = self.plan(party, usage, cost, where, self.now())
        return SharedReservation(new_record_id(), held, local)

    def _fallback_engine(self) -> Budgets:
        """The local engine, its hard limits cut to ``local_fraction``."""
        with self._fallback_lock:
            known = {p.id for p in self._fallback.policies()}
            for policy in self.local.policies():
                if policy.id not in known:
                    self._fallback.add(cut(policy, self._fraction))
        return self._fallback

    # -- settle and release ----------------------------------------------------

    def settle(
        self, reservation: SharedReservation, usage: NormalizedUsage, cost: Cost
    ) -> None:
        """Replace the reservation by the call's actual spending, on Redis
        (queued: the call does not wait)."""
        if not reservation.close():
            return
        self.settler.untrack(reservation.id)
        if reservation.local is not None:
            self._fallback.settle(reservation.local, usage, cost)
        actual = []
        for h in reservation.held:
            amount = h.policy.amount(usage, cost)
            actual.append(h.amount if amount is None else amount)
        self._submit(reservation, actual)

    def release(self, reservation: SharedReservation) -> None:
        """Drop a reservation: nothing was spent."""
        if not reservation.close():
            return
        self.settler.untrack(reservation.id)
        if reservation.local is not None:
            self._fallback.release(reservation.local)
            return  # Redis never held it, and nothing was spent
        self._submit(reservation, [_ZERO] * len(reservation.held))

    def _submit(self, reservation: SharedReservation, actual: list[Decimal]) -> None:
        held = reservation.held
        args: list[Any] = [epoch_ms(self.now()), reservation.id]
        for h, amount in zip(held, actual, strict=True):
            args += [to_units(h.policy, amount), h.roll_ms, h.ttl_ms, h.alerts()]
        keys = [h.key for h in held] + [f"{self.prefix}done"]
        self.settler.submit(Settlement(keys, args, self._alerter(held)))

    def _alerter(self, held: list[Held]) -> Callable[[list[bytes]], None]:
        def send(claimed: list[bytes]) -> None:
            for alert in alerts_from(held, claimed, self.now()):
                send_alert(alert, self.on_alert)

        return send

    def close(self, timeout: float = 2.0) -> None:
        """Hand queued settlements to Redis (within ``timeout``), then close."""
        self.settler.close(timeout)
        self.link.close()
