"""Running one call: candidates in failover order, the breaker's admission,
attempts with retries, the deadline, and what is recorded on the way.

`Dispatcher` is the half of the pipeline that talks to upstreams (through the
steps it yields); `palyra._pipeline.Pipeline` adds the operations on top.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import httpx

from .._config import ModelRole, ProviderConfig
from .._exceptions import (
    APIError,
    APIStatusError,
    APITimeoutError,
    ContextWindowExceededError,
    CredentialError,
    InvalidRequestError,
    NoProviderAvailableError,
    UnsupportedCapabilityError,
    _CallContextError,
)
from .._providers.base import ProviderAdapter, Target, request_id
from .._registry import Registry, ResolvedModel
from .._request import Needs
from .._tokens import TokenCounter
from .._wire import Attempt
from .failover import plan as failover_plan
from .health import Admission, HealthTracker
from .session import StreamSession
from .steps import (
    CallContext,
    Flow,
    Hook,
    Operation,
    Outcome,
    Prime,
    ProviderCall,
    Sleep,
    transport_error,
)

if TYPE_CHECKING:
    from .retry import Failure, RetryPolicy  # loaded lazily (tenacity)

__all__: list[str] = []

T = TypeVar("T")
E = TypeVar("E", bound=_CallContextError)


# Checks a candidate before it is tried (token estimate, context window).
Prepare = Callable[[ResolvedModel], None]
Build = Callable[[Target, ProviderAdapter], httpx.Request]
# Makes the stream session for an opened streaming response.
Opener = Callable[[CallContext, Target, ProviderAdapter], "StreamSession"]


@dataclass(frozen=True, slots=True)
class Served:
    """A candidate's successful answer."""

    target: Target
    adapter: ProviderAdapter
    response: httpx.Response
    session: StreamSession | None = None


@dataclass(frozen=True, slots=True)
class _Failed:
    """A candidate that did not answer; ``failure`` is None when it was never
    called because its breaker was open."""

    error: _CallContextError
    failure: Failure | None
    sent: bool = False  # a request went upstream


class Dispatcher:
    """Runs calls for the pipeline's operations, sync or async alike.

    Args:
        registry: The resolved providers and models.
        counter: Returns the token counter (created lazily by the client).
        adapter: Returns the adapter for a provider kind.
        credential: Returns the credential for a provider (or None).
        health: Breakers and health windows (a fresh tracker by default).
        clock: Monotonic seconds for call deadlines (tests inject a fake one
            that their fake sleep advances).
    """

    def __init__(
        self,
        registry: Registry,
        counter: Callable[[], TokenCounter],
        adapter: Callable[[ResolvedModel], ProviderAdapter],
        credential: Callable[[ResolvedModel], str | None],
        health: HealthTracker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.resilience = registry.config.resilience
        self._counter = counter
        self._adapter = adapter
        self._credential = credential
        self._policies: dict[str, RetryPolicy] = {}  # by provider id
        self.health = health if health is not None else HealthTracker()
        # Seams: routing and budget reservation go before dispatch (a hook may
        # replace ctx.model); settlement and the ledger after completion; a
        # reservation is released after failure.
        self.before_dispatch: list[Hook] = []
        self.after_completion: list[Hook] = []
        self.after_failure: list[Hook] = []

    def _start(
        self, operation: Operation, model: ResolvedModel, deadline: float | None
    ) -> CallContext:
        seconds = deadline if deadline is not None else self.resilience.deadline
        end = None if seconds is None else self.clock() + seconds
        return CallContext(
            operation,
            model,
            time.perf_counter(),
            end,
            seconds,
            self.clock,
            requested=model,
        )

    def _context(
        self,
        operation: Operation,
        model_name: str | None,
        role: ModelRole,
        deadline: float | None,
    ) -> CallContext:
        ctx = self._start(operation, self.registry.resolve(model_name, role), deadline)
        for hook in self.before_dispatch:
            hook(ctx)  # routing may replace ctx.model
        ctx.requested = ctx.model
        return ctx

    def _serve(
        self,
        ctx: CallContext,
        needs: Needs,
        prepare: Prepare,
        build: Build,
        opener: Opener | None = None,
    ) -> Flow[Served]:
        """Try the call's candidates in failover order until one answers."""
        assert ctx.requested is not None
        plan = failover_plan(
            self.registry,
            ctx.requested,
            needs,
            self.health,
            auto=self.resilience.failover,
        )
        failures: list[_Failed] = []
        keys: list[tuple[str, str]] = []
        for model in plan:
            ctx.model = model
            keys.append((model.provider.id, model.id))
            result = yield from self._candidate(ctx, model, prepare, build, opener)
            if isinstance(result, Served):
                return result
            failures.append(result)
            if result.failure is not None:
                plan.narrow(model, result.failure)
            left = ctx.left()
            if left is not None and left <= _LATE:
                break  # no time for another candidate: nothing more is sent
        raise self._fail_call(ctx, failures, keys)

    def _candidate(
        self,
        ctx: CallContext,
        model: ResolvedModel,
        prepare: Prepare,
        build: Build,
        opener: Opener | None,
    ) -> Flow[Served | _Failed]:
        """One candidate: checked, admitted by its breaker, then attempted."""
        try:
            prepare(model)
            target = Target(model, self._credential(model))
        except (ContextWindowExceededError, CredentialError) as exc:
            return self._skip(ctx, model, exc)
        adapter = self._adapter(model)
        try:
            request = build(target, adapter)
        except (UnsupportedCapabilityError, InvalidRequestError) as exc:
            if model is ctx.requested:
                raise  # the caller asked this model for what it cannot do
            # A fallback's dialect cannot express the request: try the next.
            reason = UnsupportedCapabilityError(
                getattr(exc, "message", None) or str(exc),
                capability=getattr(exc, "capability", None) or "request",
                provider=model.provider.id,
                model=model.id,
            )
            return self._skip(ctx, model, reason, failover=True)
        # Asked last, once a request exists: an admitted probe is always sent.
        admission = self._admit(model)
        if not admission:
            return self._skip(ctx, model, self._circuit_open(target))
        return (
            yield from self._attempts(ctx, adapter, target, request, opener, admission)
        )

    def _single(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
    ) -> Flow[httpx.Response]:
        """A provider-level call (model lists, token counts): no failover."""
        admission = self._admit(target.model)
        error: _CallContextError
        if not admission:
            error = self._circuit_open(target)
        else:
            result = yield from self._attempts(
                ctx, adapter, target, request, None, admission
            )
            if isinstance(result, Served):
                return result.response
            error = result.error
        error.attempts = ctx.attempts
        raise error

    def _admit(self, model: ResolvedModel) -> Admission:
        provider = model.provider
        return self.health.admit(
            (provider.id, model.id),
            provider.circuit_breaker_threshold,
            provider.circuit_breaker_cooldown,
        )

    def _attempts(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
        opener: Opener | None,
        admission: Admission,
    ) -> Flow[Served | _Failed]:
        # The one retry layer: attempts on this target, with the provider's
        # backoff and the upstream's Retry-After between them.
        provider = target.model.provider
        key = (provider.id, target.model.id)
        base = request.extensions["timeout"]
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            served, error, response = yield from self._attempt(
                ctx, adapter, target, request, opener, base
            )
            elapsed = time.perf_counter() - started
            if served is not None:
                session = served.session
                if session is not None and not admission.probe:
                    # A stream has not succeeded until it ends: its report waits
                    # (a half-open probe reports now, so traffic can return).
                    session.admission = admission
                else:
                    self.health.record(key, True, elapsed * 1000, admission=admission)
                return served
            assert error is not None
            from .retry import classify  # loaded on the first failure only

            headers = response.headers if response is not None else None
            failure = classify(error, headers)
            ctx.attempts[-1].failure = failure.cls.value
            wait = self._policy(provider).decide(attempt, failure, elapsed)
            left = ctx.left()
            if wait is None or (left is not None and wait >= left):
                self._report(key, failure, error, elapsed, admission)
                return _Failed(error, failure, sent=True)
            yield Sleep(wait)

    def _policy(self, provider: ProviderConfig) -> RetryPolicy:
        policy = self._policies.get(provider.id)
        if policy is None:
            from .retry import RetryPolicy

            policy = self._policies[provider.id] = RetryPolicy.from_provider(
                provider, retry_after_cap=self.resilience.retry_after_cap
            )
        return policy

    def _attempt(
        self,
        ctx: CallContext,
        adapter: ProviderAdapter,
        target: Target,
        request: httpx.Request,
        opener: Opener | None,
        base: dict[str, float],
    ) -> Flow[tuple[Served | None, APIError | None, httpx.Response | None]]:
        """One HTTP attempt, with its timeouts cut to the call's deadline; a
        stream counts as answered once its first chunk has arrived."""
        left = ctx.left()
        request.extensions["timeout"] = _cut(base, left)
        outcome = yield ProviderCall(target, request, opener is not None)
        assert outcome is not None
        response, error = self._judge(target, adapter, outcome)
        latency = outcome.latency_ms
        session = None
        if error is None and opener is not None:
            assert response is not None
            session = opener(ctx, target, adapter)
            session.request_id = request_id(response)
            # httpcore reads the body's read timeout when the body is first
            # read: the provider's own, so chunks after the first may take it.
            # The deadline bounds the first chunk through `Prime.within`.
            request.extensions["timeout"] = base
            now_left = ctx.left()
            session.limit_first_chunk(now_left)
            cut = now_left if now_left is not None and now_left < base["read"] else None
            primed = yield Prime(session, response, cut)
            assert primed is not None
            latency += primed.latency_ms
            if primed.error is not None:
                # The drivers type every priming failure (`StreamSession`).
                assert isinstance(primed.error, APIError)
                error = primed.error
        after = ctx.left()
        if isinstance(error, APITimeoutError) and after is not None and after <= _LATE:
            # The deadline, not the upstream's own pace, ended this attempt.
            error = _deadline_error(ctx, target, error)
        self._record(ctx, target, response, error, latency)
        if error is not None:
            return None, error, response
        assert response is not None
        if session is not None:
            session.live = True
            session.info = ctx.info()
        return Served(target, adapter, response, session), None, response

    def _report(
        self,
        key: tuple[str, str],
        failure: Failure,
        error: APIError,
        elapsed: float,
        admission: Admission,
    ) -> None:
        # Only the provider's failures count against its breaker: a rejected
        # request means the upstream is answering.
        ok = not failure.provider_fault
        self.health.record(key, ok, elapsed * 1000, error, admission)
        if failure.cls in ("auth_invalid", "permission") and failure.status:
            self.health.mark_credential(key[0], failure.cls.value)

    def _skip(
        self,
        ctx: CallContext,
        model: ResolvedModel,
        error: _CallContextError,
        *,
        failover: bool = False,
    ) -> _Failed:
        """A candidate passed over without a request: recorded, then failed.
        ``failover`` lets the next candidates be tried whatever the error."""
        from .retry import Failure, FailureClass, classify

        failure = None
        if failover:
            failure = Failure(FailureClass.UNKNOWN, retryable=False, failover=True)
        elif not isinstance(error, NoProviderAvailableError):
            failure = classify(error)
        ctx.attempts.append(
            Attempt(
                provider=model.provider.id,
                model=model.id,
                outcome="skipped",
                error=type(error).__name__,
                failure=failure.cls.value if failure else None,
                latency_ms=0.0,
            )
        )
        return _Failed(error, failure)

    def _fail_call(
        self,
        ctx: CallContext,
        failures: list[_Failed],
        keys: list[tuple[str, str]],
    ) -> _CallContextError:
        """The error of a call no candidate served: the last real failure, or
        `NoProviderAvailableError` when every breaker was open."""
        # An upstream's answer says most; then why a candidate was passed over.
        tried = [f for f in failures if f.sent] or [
            f for f in failures if f.failure is not None
        ]
        if tried:
            error = tried[-1].error
        else:
            wait = self.health.earliest_reopen(keys)
            requested = ctx.requested or ctx.model
            error = NoProviderAvailableError(
                f"every candidate's circuit breaker is open ({len(keys)} tried);"
                f" the next probe goes through in {wait or 0:.1f}s",
                retry_after=wait,
                provider=requested.provider.id,
                model=requested.id,
            )
        return self.failed_after(ctx, error)

    def _circuit_open(self, target: Target) -> APIError:
        model = target.model
        wait = self.health.earliest_reopen([(model.provider.id, model.id)])
        return target.fail(
            NoProviderAvailableError,
            "circuit breaker is open after repeated failures; the next probe goes"
            f" through in {wait or 0:.1f}s",
            retry_after=wait,
        )

    def _judge(
        self, target: Target, adapter: ProviderAdapter, outcome: Outcome
    ) -> tuple[httpx.Response | None, APIError | None]:
        """The response or typed error of one attempt."""
        response = outcome.response
        if response is None:
            return None, transport_error(target, outcome.error)
        if response.status_code >= 400:
            return response, adapter.status_error(target, response)
        if response.status_code >= 300:
            location = response.headers.get("location", "nowhere")
            return response, target.fail(
                APIStatusError,
                f"upstream answered with a redirect to {location}; check base_url",
                status_code=response.status_code,
                request_id=request_id(response),
            )
        return response, None

    def _record(
        self,
        ctx: CallContext,
        target: Target,
        response: httpx.Response | None,
        error: APIError | None,
        latency_ms: float,
    ) -> None:
        if error is not None:
            rid = error.request_id
        else:
            rid = request_id(response) if response is not None else None
        ctx.attempts.append(
            Attempt(
                provider=target.model.provider.id,
                model=target.model.id,
                outcome="error" if error else "success",
                error=type(error).__name__ if error else None,
                status_code=response.status_code if response is not None else None,
                latency_ms=latency_ms,
                request_id=rid,
            )
        )

    def stream_ended(
        self, ctx: CallContext, target: Target, admission: Admission | None
    ) -> None:
        """A stream ended well (or its reader stopped early): its deferred
        report to the breaker and health window."""
        if admission is not None:
            key = (target.model.provider.id, target.model.id)
            latency = (time.perf_counter() - ctx.started) * 1000
            self.health.record(key, True, latency, admission=admission)

    def stream_failed(
        self,
        ctx: CallContext,
        target: Target,
        error: APIError,
        admission: Admission | None,
    ) -> None:
        """A stream broke after its first chunk: too late to fail over, but
        the breaker and health hear of it and the attempt says so."""
        from .retry import classify

        failure = classify(error)
        key = (target.model.provider.id, target.model.id)
        latency = (time.perf_counter() - ctx.started) * 1000
        ok = not failure.provider_fault
        self.health.record(key, ok, latency, error, admission)
        if ctx.attempts:
            ctx.attempts[-1].failure = failure.cls.value
        self.failed_after(ctx, error)  # marks the attempt an error

    def failed_after(self, ctx: CallContext, error: E) -> E:
        """A served answer turned out unusable (e.g. JSON mode): the error gets
        the attempts and the failure hooks run."""
        last = ctx.attempts[-1] if ctx.attempts else None
        if last is not None and last.outcome == "success":
            last.outcome = "error"  # the HTTP exchange worked; its answer did not
            last.error = type(error).__name__
        error.attempts = ctx.attempts
        ctx.error = error
        for hook in self.after_failure:
            hook(ctx)
        return error

    def _complete(self, ctx: CallContext, result: T) -> T:
        result.palyra = ctx.info()  # type: ignore[attr-defined]
        ctx.result = result
        for hook in self.after_completion:
            hook(ctx)
        return result


_LATE = 0.001  # seconds left at which a call's deadline counts as passed


def _cut(base: dict[str, float], left: float | None) -> dict[str, float]:
    """The attempt's timeouts, none longer than the time left in the call."""
    if left is None or left >= max(base.values()):
        return base
    left = max(left, _LATE)
    return {name: min(value, left) for name, value in base.items()}


def _deadline_error(ctx: CallContext, target: Target, cause: APIError) -> APIError:
    # Built before this attempt is recorded: it counts as sent.
    sent = len(ctx.attempts) + 1
    error = target.fail(
        APITimeoutError,
        f"call deadline of {ctx.seconds or 0:g}s passed after {sent} attempt(s)"
        f" ({cause.message})",
    )
    error.request_id = cause.request_id
    return error
