"""Running one call over its candidates: failover order, the per-candidate
hooks, the breaker's admission, skips, and the call's final error.

`Dispatcher.serve` is the outer loop of a call (candidates, skip, fail); the
attempts at each candidate are `palyra._core.attempts`. The operations on top
are `palyra._core.pipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TypeVar

import httpx

from .._config import ResilienceConfig
from .._exceptions import (
    APIError,
    ContextWindowExceededError,
    CredentialError,
    InvalidRequestError,
    NoProviderAvailableError,
    PalyraError,
    UnsupportedCapabilityError,
    _CallContextError,
)
from .._providers import ProviderAdapter, Target
from .._registry import Registry, ResolvedModel
from .._request import Needs
from .._wire import Attempt, ChatCompletion, CompletionUsage
from .attempts import LATE, Attempts, NotServed, Opener, Reader, Served
from .context import CallContext
from .failover import FailoverLog, Plan
from .failover import plan as failover_plan
from .failures import Failure, FailureClass, classify
from .health import Admission, HealthTracker
from .hooks import Candidate, Failed, Hooks, Result, Usage
from .steps import Flow, Work

__all__ = ["Build", "Dispatcher", "Prepare"]

R = TypeVar("R", bound=Result)
E = TypeVar("E", bound=BaseException)

# Checks a candidate before it is tried (token estimate, context window).
Prepare = Callable[[ResolvedModel], None]
Build = Callable[[Target, ProviderAdapter], httpx.Request]


class Dispatcher:
    """Tries a call's candidates in failover order until one serves.

    Args:
        registry: The resolved providers and models.
        hooks: The pipeline's seams.
        health: Breakers and health windows.
        resilience: Failover and deadline settings.
        credential: Returns the credential for a call to a model (or None).
        adapter: Returns the adapter for a model's provider.
        clock: Monotonic seconds (for how often failovers are logged).
    """

    def __init__(
        self,
        registry: Registry,
        hooks: Hooks,
        health: HealthTracker,
        resilience: ResilienceConfig,
        credential: Callable[[CallContext, ResolvedModel], str | None],
        adapter: Callable[[ResolvedModel], ProviderAdapter],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.hooks = hooks
        self.health = health
        self.resilience = resilience
        self.limits = registry.config.limits  # every candidate's size caps
        self.credential = credential
        self.adapter = adapter
        self.attempts = Attempts(health, resilience.retry_after_cap)
        self.moves = FailoverLog(clock)

    def serve(
        self,
        ctx: CallContext,
        needs: Needs,
        prepare: Prepare,
        build: Build,
        opener: Opener | None = None,
        reader: Reader | None = None,
    ) -> Flow[Served]:
        """Route the call, then try its candidates in failover order until one
        answers. A call that fails here, whatever failed (a check, a hook, an
        upstream, a cancellation), is reported to the failure hooks once."""
        try:
            self.hooks.routed(ctx)  # routing may replace the requested model
            assert ctx.requested is not None
            _check_needs(ctx.requested, needs)
            call = getattr(ctx.request, "call", None)
            plan = (
                Plan(ctx.requested)  # failover=False: this model or nothing
                if call is not None and not call.failover
                else failover_plan(
                    self.registry, ctx.requested, needs, self.health, self.resilience
                )
            )
            failures: list[NotServed] = []
            keys: list[tuple[str, str]] = []
            for index, model in enumerate(plan):
                if failures:
                    self.moves.moved(ctx.model, model, _why(failures[-1]))
                ctx.model = model
                keys.append((model.provider.id, model.id))
                result = yield from self._candidate(
                    ctx, model, index, prepare, build, (opener, reader)
                )
                if isinstance(result, Served):
                    return result
                failures.append(result)
                if result.failure is not None:
                    plan.narrow(model, result.failure)
                left = ctx.left()
                if left is not None and left <= LATE:
                    break  # no time for another candidate: nothing more is sent
            raise self._fail_call(ctx, failures, keys)
        except GeneratorExit:
            raise  # abandoned by its driver: nothing to report to
        except BaseException as exc:
            if not ctx.failed:
                self.fail(ctx, exc)
            raise

    def _candidate(
        self,
        ctx: CallContext,
        model: ResolvedModel,
        index: int,
        prepare: Prepare,
        build: Build,
        reading: tuple[Opener | None, Reader | None],
    ) -> Flow[Served | NotServed]:
        """One candidate: checked and built, announced to the hooks, admitted
        by its breaker, then attempted."""
        try:
            prepare(model)
            target = Target(model, self.credential(ctx, model), self.limits)
        except (ContextWindowExceededError, CredentialError) as exc:
            return self._skip(ctx, model, exc)
        adapter = self.adapter(model)
        try:
            request = build(target, adapter)
        except (UnsupportedCapabilityError, InvalidRequestError) as exc:
            if index == 0:
                raise  # the caller asked this model for what it cannot do
            # A fallback's dialect cannot express the request: try the next.
            return self._skip(ctx, model, _inexpressible(model, exc), failover=True)
        candidate = Candidate(model, target, index)
        yield from self._dispatching(ctx, candidate, request)
        # Asked last, once the hooks agreed: an admitted probe is always sent.
        admission = self._admit(model)
        if not admission:
            error = self._circuit_open(target)
            self.hooks.failed(ctx, Failed(candidate, error))
            return self._skip(ctx, model, error)
        try:
            result = yield from self.attempts.run(
                ctx, candidate, adapter, request, reading[0], admission, reading[1]
            )
        except BaseException as exc:
            # Cancelled or interrupted mid-attempt (the drivers throw it in):
            # the candidate announced to the hooks still ends.
            self.hooks.failed(ctx, Failed(candidate, exc))
            raise
        if isinstance(result, NotServed):
            self.hooks.failed(ctx, Failed(candidate, result.error))
        elif result.session is not None:
            result.session.hand_over(StreamEnd(self, ctx, candidate, result.admission))
        return result

    def _dispatching(
        self, ctx: CallContext, candidate: Candidate, request: httpx.Request
    ) -> Generator[Work, object, None]:
        """The per-candidate hooks; one that raises ends the call at once."""
        try:
            yield from self.hooks.dispatching(ctx, candidate, request)
        except Exception as exc:
            ctx.attempts.append(_passed_over(candidate.model, exc, None))
            self.hooks.failed(ctx, Failed(candidate, exc))
            raise self.fail(ctx, exc) from None

    def single(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
        reader: Reader,
    ) -> Flow[object]:
        """A provider-level call (model lists, token counts): no failover and
        no hooks (nothing is billed); its result is what ``reader`` made of
        the answer."""
        candidate = Candidate(target.model, target, 0)
        admission = self._admit(target.model)
        error: APIError | Exception
        if not admission:
            error = self._circuit_open(target)
        else:
            result = yield from self.attempts.run(
                ctx, candidate, adapter, request, None, admission, reader
            )
            if isinstance(result, Served):
                return result.result
            error = result.error
        if isinstance(error, _CallContextError):
            error.attempts = ctx.attempts
        raise error

    def _admit(self, model: ResolvedModel) -> Admission:
        provider = model.provider
        return self.health.admit(
            (provider.id, model.id),
            provider.circuit_breaker_threshold,
            provider.circuit_breaker_cooldown,
        )

    def _skip(
        self,
        ctx: CallContext,
        model: ResolvedModel,
        error: _CallContextError,
        *,
        failover: bool = False,
    ) -> NotServed:
        """A candidate passed over without a request: recorded, then failed.
        ``failover`` lets the next candidates be tried whatever the error."""
        failure = None
        if failover:
            failure = Failure(FailureClass.UNKNOWN, retryable=False, failover=True)
        elif not isinstance(error, NoProviderAvailableError):
            failure = classify(error)
        ctx.attempts.append(_passed_over(model, error, failure))
        return NotServed(error, failure)

    def _fail_call(
        self,
        ctx: CallContext,
        failures: list[NotServed],
        keys: list[tuple[str, str]],
    ) -> BaseException:
        """The error of a call no candidate served: the last real failure, or
        `NoProviderAvailableError` when every breaker was open."""
        # An upstream's answer says most; then why a candidate was passed over.
        tried = [f for f in failures if f.sent] or [
            f for f in failures if f.failure is not None
        ]
        if tried:
            return self.fail(ctx, tried[-1].error)
        wait = self.health.earliest_reopen(keys)
        requested = ctx.requested or ctx.model
        error = NoProviderAvailableError(
            f"every candidate's circuit breaker is open ({len(keys)} tried);"
            f" the next probe goes through in {wait or 0:.1f}s",
            retry_after=wait,
            provider=requested.provider.id,
            model=requested.id,
        )
        return self.fail(ctx, error)

    def _circuit_open(self, target: Target) -> APIError:
        model = target.model
        wait = self.health.earliest_reopen([(model.provider.id, model.id)])
        return target.fail(
            NoProviderAvailableError,
            "circuit breaker is open after repeated failures; the next probe goes"
            f" through in {wait or 0:.1f}s",
            retry_after=wait,
        )

    # -- the end of a call -----------------------------------------------------

    def complete(
        self, ctx: CallContext, candidate: Candidate, result: R, usage: Usage | None
    ) -> R:
        """The call is served: stamp ``palyra`` and run the completion hooks."""
        result.palyra = ctx.info()
        ctx.result = result
        self.hooks.completed(ctx, candidate, result, usage)
        return result

    def reject(self, ctx: CallContext, candidate: Candidate, error: E) -> E:
        """A served answer turned out unusable (e.g. JSON mode): the candidate
        and the call have failed."""
        self.hooks.failed(ctx, Failed(candidate, error))
        return self.fail(ctx, error)

    def fail(self, ctx: CallContext, error: E, usage: Usage | None = None) -> E:
        """The call has failed: the error gets the attempts and the call-level
        failure hooks run."""
        last = ctx.attempts[-1] if ctx.attempts else None
        if last is not None and last.outcome == "success":
            last.outcome = "error"  # the HTTP exchange worked; its answer did not
            last.error = type(error).__name__
        if isinstance(error, _CallContextError):
            error.attempts = ctx.attempts
        if isinstance(error, PalyraError):
            ctx.error = error
        ctx.failed = True
        self.hooks.failed(ctx, Failed(None, error, usage))
        return error


class StreamEnd:
    """Where a stream handed to the caller reports its end: the breaker and
    health window hear of it, then the hooks (one small callback object)."""

    __slots__ = ("_admission", "_candidate", "_ctx", "_dispatcher")

    def __init__(
        self,
        dispatcher: Dispatcher,
        ctx: CallContext,
        candidate: Candidate,
        admission: Admission | None,
    ) -> None:
        self._dispatcher = dispatcher
        self._ctx = ctx
        self._candidate = candidate
        self._admission = admission

    def ended(
        self, completion: ChatCompletion | None, usage: CompletionUsage | None
    ) -> None:
        """Finished, or closed early by the reader: a success either way."""
        dispatcher, ctx, candidate = self._dispatcher, self._ctx, self._candidate
        if self._admission is not None:
            key = (candidate.model.provider.id, candidate.model.id)
            dispatcher.health.record(
                key, True, ctx.elapsed_ms(), admission=self._admission
            )
        if completion is not None:
            dispatcher.complete(ctx, candidate, completion, usage)
        else:
            dispatcher.hooks.completed(ctx, candidate, None, usage)

    def failed(
        self, error: APIError, usage: CompletionUsage | None, *, upstream_fault: bool
    ) -> None:
        """Broken after its first chunk (too late to fail over), or unusable."""
        dispatcher, ctx, candidate = self._dispatcher, self._ctx, self._candidate
        failure = classify(error)
        if ctx.attempts:
            ctx.attempts[-1].failure = failure.cls.value
        if upstream_fault:
            dispatcher.attempts.report(
                candidate, failure, error, ctx.elapsed_ms(), self._admission
            )
        elif self._admission is not None:
            key = (candidate.model.provider.id, candidate.model.id)
            dispatcher.health.record(
                key, True, ctx.elapsed_ms(), admission=self._admission
            )
        dispatcher.hooks.failed(ctx, Failed(candidate, error, usage))
        dispatcher.fail(ctx, error, usage)


def _why(failed: NotServed) -> str:
    """What a failover log line says the previous candidate failed with."""
    if failed.failure is not None:
        return failed.failure.cls.value
    return (
        "breaker_open"
        if isinstance(failed.error, NoProviderAvailableError)
        else (type(failed.error).__name__)
    )


def _check_needs(model: ResolvedModel, needs: Needs) -> None:
    for name in needs.names():
        if not getattr(model.capabilities, name):
            raise UnsupportedCapabilityError(
                f"model {model.id!r} does not support {name.replace('_', ' ')}",
                capability=name,
                provider=model.provider.id,
                model=model.id,
            )


def _passed_over(
    model: ResolvedModel, error: BaseException, failure: Failure | None
) -> Attempt:
    return Attempt(
        provider=model.provider.id,
        model=model.id,
        outcome="skipped",
        error=type(error).__name__,
        failure=failure.cls.value if failure else None,
        latency_ms=0.0,
    )


def _inexpressible(
    model: ResolvedModel, exc: PalyraError
) -> UnsupportedCapabilityError:
    return UnsupportedCapabilityError(
        getattr(exc, "message", None) or str(exc),
        capability=getattr(exc, "capability", None) or "request",
        provider=model.provider.id,
        model=model.id,
    )
