"""Usage governance joined to the pipeline: the three hooks of one client.

Before a candidate is sent, its worst case is reserved against the budgets
(`BudgetExceededError` stops the call there, with nothing sent). When the
call is served, its usage is normalised and priced, the reservation settles
to what it really cost, ``reply.palyra`` gets ``usage`` and ``cost``, and one
record goes to the ledger. A candidate that fails gives its reservation back
(or settles it, when a broken stream had already been billed tokens); a call
that fails is recorded too, with whatever tokens it was billed.

The core calls these hooks; they never raise into it except to refuse a
dispatch (the core logs and counts any other exception of theirs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, cast

import httpx

from ._core import CallContext, Candidate, Completion, Failed, Hooks, Work
from ._governance import LedgerSlot, Meter, UsageRecord
from ._registry import ResolvedModel
from ._usage import Cost, NormalizedUsage

__all__ = ["Governance"]

_FREE = Cost(total=Decimal(0), unpriced=False)


class BudgetEngine(Protocol):
    """What the hooks need of budgets (`palyra._governance.Budgets`)."""

    @property
    def active(self) -> bool: ...

    def reserve(
        self,
        party: Any,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
    ) -> Any: ...

    def settle(self, reservation: Any, usage: NormalizedUsage, cost: Cost) -> None: ...

    def release(self, reservation: Any) -> None: ...


class SharedEngine(BudgetEngine, Protocol):
    """Budgets whose reservations are I/O (`palyra._state.SharedBudgets`)."""

    async def areserve(
        self,
        party: Any,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
        deadline_left: float | None = None,
    ) -> Any: ...

    def reserve(
        self,
        party: Any,
        usage: NormalizedUsage,
        cost: Cost,
        *,
        provider: str,
        model: str,
        deadline_left: float | None = None,
    ) -> Any: ...


def _shared(
    ctx: CallContext,
    candidate: Candidate,
    budgets: SharedEngine,
    worst: NormalizedUsage,
    cost: Cost,
) -> Work:
    """The reservation as the driver's work: in this thread for a sync call,
    awaited on the loop for an async one."""
    call = ctx.governance = _Call(candidate, None)
    model = candidate.model
    where: dict[str, Any] = {
        "provider": model.provider.id,
        "model": model.id,
        "deadline_left": ctx.left(),
    }

    def run() -> None:
        call.reservation = budgets.reserve(ctx.caller, worst, cost, **where)

    async def arun() -> None:
        call.reservation = await budgets.areserve(ctx.caller, worst, cost, **where)

    return Work(run, arun)


class _Call:
    """Governance's state of one call, kept on its context."""

    __slots__ = ("candidate", "reservation")

    def __init__(self, candidate: Candidate, reservation: Any) -> None:
        self.candidate = candidate
        self.reservation = reservation


class Governance:
    """The hooks that price, budget and record one client's calls.

    Args:
        meter: Prices usage.
        slot: The ledger (or none).
        budgets: The budget engine, or None.
        profile_of: The auth profile id a credential belongs to, if any.
    """

    def __init__(
        self,
        meter: Meter,
        slot: LedgerSlot,
        budgets: BudgetEngine | None,
        profile_of: Callable[[str | None], str | None],
    ) -> None:
        self.meter = meter
        self.slot = slot
        self.budgets = budgets
        self.profile_of = profile_of
        # Decided once: the check costs nothing per call.
        shared = budgets is not None and hasattr(budgets, "areserve")
        self._shared = cast(SharedEngine, budgets) if shared else None

    def install(self, hooks: Hooks) -> None:
        """Join the pipeline (before the other subsystems' completion hooks
        read ``reply.palyra``)."""
        hooks.before_dispatch.append(self.dispatching)
        hooks.after_completion.append(self.completed)
        hooks.after_failure.append(self.failed)

    # -- the hooks ---------------------------------------------------------

    def dispatching(
        self, ctx: CallContext, candidate: Candidate, request: httpx.Request
    ) -> Work | None:
        """Reserve the candidate's worst case (raises `BudgetExceededError`).

        The price table is read here, on the first call that needs it: a bad
        table file fails that call before anything is sent (`ConfigError`).
        Budgets shared on Redis reserve through a `Work` the driver does
        (awaited in an async call).
        """
        self.meter.prices.table()
        budgets = self.budgets
        reservation = None
        if budgets is not None and budgets.active:
            worst = self._worst_case(ctx, candidate)
            model = candidate.model
            cost = self._priced(model, worst, datetime.now(UTC))
            if self._shared is not None:
                return _shared(ctx, candidate, self._shared, worst, cost)
            reservation = budgets.reserve(
                ctx.caller, worst, cost, provider=model.provider.id, model=model.id
            )
        ctx.governance = _Call(candidate, reservation)
        return None

    def completed(self, ctx: CallContext, completion: Completion) -> None:
        """Price the answer, settle its reservation, stamp it and record it."""
        finished = datetime.now(UTC)
        started = finished - timedelta(milliseconds=completion.latency_ms)
        usage = self.meter.usage(completion.usage, ctx.usage_estimated)
        model = completion.candidate.model
        cost = self._priced(model, usage, started)
        ctx.usage, ctx.cost = usage, cost
        result = completion.result
        if result is not None and result.palyra is not None:
            result.palyra.usage, result.palyra.cost = usage, cost
        self._settle(ctx, usage, cost)
        status = "ok" if completion.complete else "cancelled"
        self._record(ctx, completion.candidate, usage, cost, started, finished, status)

    def failed(self, ctx: CallContext, failed: Failed) -> None:
        """A candidate gives its reservation back; a failed call is recorded."""
        if failed.candidate is not None:
            state = ctx.governance
            if isinstance(state, _Call) and state.candidate is failed.candidate:
                if failed.usage is not None:
                    # A stream that broke mid-way was billed what it sent.
                    usage = self.meter.usage(failed.usage, ctx.usage_estimated)
                    self._settle(
                        ctx,
                        usage,
                        self._priced(failed.candidate.model, usage, datetime.now(UTC)),
                    )
                else:
                    self._release(ctx)
            return
        self._release(ctx)  # a hook that raised may have left one behind
        finished = datetime.now(UTC)
        started = finished - timedelta(milliseconds=ctx.elapsed_ms())
        state = ctx.governance
        candidate = state.candidate if isinstance(state, _Call) else None
        if failed.usage is None:
            usage, cost = NormalizedUsage(), _FREE  # nothing billed: exactly $0
        else:
            usage = self.meter.usage(failed.usage, ctx.usage_estimated)
            model = candidate.model if candidate is not None else ctx.model
            cost = self._priced(model, usage, started)
        ctx.usage, ctx.cost = usage, cost
        error = failed.error
        status = "error" if isinstance(error, Exception) else "cancelled"
        self._record(
            ctx, candidate, usage, cost, started, finished, status, type(error).__name__
        )

    # -- parts -------------------------------------------------------------

    def _worst_case(self, ctx: CallContext, candidate: Candidate) -> NormalizedUsage:
        prompt = ctx.estimate.prompt_tokens if ctx.estimate is not None else 0
        if ctx.operation != "chat":
            return NormalizedUsage(input_uncached=prompt, estimated=True)
        entry = candidate.model.entry
        requested = getattr(ctx.request, "requested_output_tokens", 0)
        return self.meter.worst_case(
            prompt, requested, entry.max_output_tokens, entry.context_window
        )

    def _priced(
        self, model: ResolvedModel, usage: NormalizedUsage, at: datetime
    ) -> Cost:
        provider = model.provider
        return self.meter.cost(provider.id, provider.kind, model.upstream, usage, at)

    def _settle(self, ctx: CallContext, usage: NormalizedUsage, cost: Cost) -> None:
        state = ctx.governance
        if isinstance(state, _Call) and state.reservation is not None:
            reservation, state.reservation = state.reservation, None
            assert self.budgets is not None
            self.budgets.settle(reservation, usage, cost)

    def _release(self, ctx: CallContext) -> None:
        state = ctx.governance
        if isinstance(state, _Call) and state.reservation is not None:
            reservation, state.reservation = state.reservation, None
            assert self.budgets is not None
            self.budgets.release(reservation)

    def _record(
        self,
        ctx: CallContext,
        candidate: Candidate | None,
        usage: NormalizedUsage,
        cost: Cost,
        started: datetime,
        finished: datetime,
        status: str,
        error_class: str | None = None,
    ) -> None:
        if not self.slot.enabled:
            return
        caller = ctx.caller
        model = candidate.model if candidate is not None else ctx.model
        credential = candidate.target.credential if candidate is not None else None
        requested = ctx.requested or ctx.model
        decision = ctx.routing
        asked = requested.id if decision is None else decision.requested
        self.slot.write(
            UsageRecord.of_call(
                started_at=started,
                finished_at=finished,
                agent=caller.agent,
                session=caller.session,
                principal=caller.principal,
                tags=dict(caller.tags),
                provider=model.provider.id,
                model=model.id,
                requested_model=asked,
                auth_profile=self.profile_of(credential),
                input_uncached=usage.input_uncached,
                cache_read=usage.cache_read,
                cache_write=usage.cache_write,
                output=usage.output,
                reasoning=usage.reasoning,
                cost_total=cost.total,
                unpriced=cost.unpriced,
                estimated=usage.estimated,
                currency=cost.currency,
                latency_ms=(finished - started).total_seconds() * 1000,
                status=status,
                error_class=error_class,
                attempts=sum(1 for a in ctx.attempts if a.outcome != "skipped"),
                routing=None if decision is None else decision.summary(),
            )
        )
