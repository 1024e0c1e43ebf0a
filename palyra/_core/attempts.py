"""Attempts at one candidate: send, judge, record, and retry (the one retry layer).

`Attempts.run` is the inner loop of a call: it yields the `ProviderCall` (and
for a stream the `Prime`) of each attempt, turns the driver's `Outcome` into a
response or a typed error, records the `Attempt`, and asks tenacity (through
`palyra._core.retry`, loaded on the first failure) whether to sleep and try
again. The failover loop around it is `palyra._core.dispatch`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import httpx

from .._config import ProviderConfig
from .._exceptions import APIError, APIStatusError, APITimeoutError
from .._providers import ProviderAdapter, Target, request_id
from .._wire import Attempt
from .context import CallContext
from .errors import deadline_error, transport_error
from .failures import CREDENTIAL_CLASSES, Failure, classify
from .health import Admission, HealthTracker
from .hooks import Candidate
from .session import StreamSession
from .steps import Flow, Outcome, Prime, ProviderCall, Sleep

if TYPE_CHECKING:
    from .retry import RetryPolicy, RetryRun  # loaded lazily (tenacity)

__all__ = ["LATE", "Answer", "Attempts", "NotServed", "Opener", "Served"]

LATE = 0.001  # seconds left at which a call's deadline counts as passed

# Makes the stream session for an opened streaming response; the last argument
# is the time left in the call (None: no deadline).
Opener = Callable[
    [CallContext, Candidate, ProviderAdapter, httpx.Response, float | None],
    StreamSession,
]
# Turns a whole (not streamed) answer into the call's result, raising a typed
# error when the upstream's answer is unusable: the attempt then failed.
Reader = Callable[[Target, ProviderAdapter, httpx.Response], object]


class Served(NamedTuple):
    """A candidate's successful answer.

    ``admission`` is the breaker admission still owed a report: a stream's
    success is only known at its end (None when reported already).
    """

    candidate: Candidate
    adapter: ProviderAdapter
    response: httpx.Response
    session: StreamSession | None = None
    admission: Admission | None = None
    result: object = None  # what the `Reader` made of a whole answer


class NotServed(NamedTuple):
    """A candidate that did not answer. ``failure`` is None when it was passed
    over for a reason that says nothing about later candidates (its breaker
    was open); ``sent`` says whether a request went upstream."""

    error: APIError | Exception
    failure: Failure | None
    sent: bool = False


class Answer(NamedTuple):
    """One HTTP attempt's answer: what served, or the error, with the response
    that carried either (None when no response arrived)."""

    served: Served | None
    error: APIError | None
    response: httpx.Response | None
    caller: bool = False  # the failure is the caller's doing (`Failure.caller`)
    sendable: bool = True  # False: the request was not valid HTTP


class Attempts:
    """The attempts of one candidate, retried by its provider's policy.

    Args:
        health: Breakers and health windows, told every final outcome.
        retry_after_cap: Longest ``Retry-After`` honoured, in seconds.
    """

    def __init__(self, health: HealthTracker, retry_after_cap: float) -> None:
        self.health = health
        self._cap = retry_after_cap
        self._policies: dict[str, RetryPolicy] = {}  # by provider id

    def run(
        self,
        ctx: CallContext,
        candidate: Candidate,
        adapter: ProviderAdapter,
        request: httpx.Request,
        opener: Opener | None,
        admission: Admission,
        reader: Reader | None = None,
    ) -> Flow[Served | NotServed]:
        """Attempt until served, or until the policy or the deadline says stop."""
        base = request.extensions["timeout"]
        started = time.perf_counter()
        retries: RetryRun | None = None
        while True:
            answer = yield from self._attempt(
                ctx, candidate, adapter, request, (opener, reader), base
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            if answer.served is not None:
                return self._served(answer.served, admission, elapsed_ms)
            assert answer.error is not None
            headers = answer.response.headers if answer.response is not None else None
            failure = classify(answer.error, headers)
            if answer.caller:
                failure = failure.by_caller(sendable=answer.sendable)
            ctx.attempts[-1].failure = failure.cls.value
            if retries is None:
                retries = self._policy(candidate.model.provider).start()
            wait = retries.after(failure)
            left = ctx.left()
            if wait is None or (left is not None and wait >= left):
                self.report(candidate, failure, answer.error, elapsed_ms, admission)
                return NotServed(answer.error, failure, sent=True)
            yield Sleep(wait)

    def _served(
        self, served: Served, admission: Admission, elapsed_ms: float
    ) -> Served:
        if served.session is not None and not admission.probe:
            # A stream has not succeeded until it ends: its report waits (a
            # half-open probe reports now, so traffic can return).
            return served._replace(admission=admission)
        self.health.record(
            _key(served.candidate), True, elapsed_ms, admission=admission
        )
        return served

    def _policy(self, provider: ProviderConfig) -> RetryPolicy:
        policy = self._policies.get(provider.id)
        if policy is None:
            from .retry import RetryPolicy  # tenacity: on the first failure only

            policy = self._policies[provider.id] = RetryPolicy.from_provider(
                provider, retry_after_cap=self._cap
            )
        return policy

    def _attempt(
        self,
        ctx: CallContext,
        candidate: Candidate,
        adapter: ProviderAdapter,
        request: httpx.Request,
        reading: tuple[Opener | None, Reader | None],
        base: dict[str, float],
    ) -> Flow[Answer]:
        """One HTTP attempt, with its timeouts cut to the call's deadline; a
        stream counts as answered once its first chunk has arrived."""
        target = candidate.target
        opener, reader = reading
        timeouts = request.extensions["timeout"] = _cut(base, ctx.left())
        local = adapter.local_transport(target)
        ctx.sending()
        outcome = yield ProviderCall(target, request, opener is not None, local)
        assert outcome is not None
        response, error = _judge(candidate, adapter, outcome)
        latency = outcome.latency_ms
        limited = _limited(target, timeouts)
        session = result = None
        if error is None and reader is not None:
            assert response is not None
            try:
                result = reader(target, adapter, response)
            except APIError as exc:
                error = exc  # an unusable answer is a failed attempt
        if error is None and opener is not None:
            assert response is not None
            # httpcore reads the body's read timeout when the body is first
            # read: the provider's own, so chunks after the first may take it.
            # The deadline bounds the first chunk through `Prime.within`.
            request.extensions["timeout"] = base
            left = ctx.left()
            session = opener(ctx, candidate, adapter, response, left)
            cut = left if left is not None and left < base["read"] else None
            limited = limited or cut is not None
            primed = yield Prime(session, response, cut)
            assert primed is not None
            latency += primed.latency_ms
            if primed.error is not None:
                # The drivers type every priming failure (`StreamSession`).
                assert isinstance(primed.error, APIError)
                error = primed.error
        after = ctx.left()
        if isinstance(error, APITimeoutError) and after is not None and after <= LATE:
            # The deadline, not the upstream's own pace, ended this attempt.
            error = deadline_error(ctx, target, error)
        _record(ctx, candidate, response, error, latency)
        if error is not None:
            if isinstance(outcome.error, httpx.LocalProtocolError):
                return Answer(None, error, response, caller=True, sendable=False)
            caller = limited and isinstance(error, APITimeoutError)
            return Answer(None, error, response, caller=caller)
        assert response is not None
        served = Served(candidate, adapter, response, session, result=result)
        return Answer(served, None, response)

    def report(
        self,
        candidate: Candidate,
        failure: Failure,
        error: BaseException,
        elapsed_ms: float,
        admission: Admission | None,
    ) -> None:
        """Tell the breaker and health window how a candidate failed."""
        if not failure.reported:
            return  # a refused address, or the caller's own limits or input
        # Only the provider's failures count against its breaker: a rejected
        # request means the upstream is answering.
        key = _key(candidate)
        ok = not failure.provider_fault
        self.health.record(key, ok, elapsed_ms, error, admission)
        if failure.cls in CREDENTIAL_CLASSES and failure.status:
            self.health.mark_credential(key[0], failure.cls.value)


def _key(candidate: Candidate) -> tuple[str, str]:
    return candidate.model.provider.id, candidate.model.id


def _judge(
    candidate: Candidate, adapter: ProviderAdapter, outcome: Outcome
) -> tuple[httpx.Response | None, APIError | None]:
    """The response or typed error of one attempt."""
    target = candidate.target
    response = outcome.response
    if response is None:
        if isinstance(outcome.error, APIError):
            return None, outcome.error  # typed by the driver: a body past its cap
        return None, transport_error(target, outcome.error)
    if response.status_code >= 400:
        return response, adapter.status_error(target, response)
    if response.status_code >= 300:
        location = response.headers.get("location", "nowhere")
        return response, target.fail(
            APIStatusError,
            f"upstream answered with a redirect to {location}; check base_url",
            status_code=response.status_code,
            request_id=request_id(response, candidate.target.secrets),
        )
    return response, None


def _record(
    ctx: CallContext,
    candidate: Candidate,
    response: httpx.Response | None,
    error: APIError | None,
    latency_ms: float,
) -> None:
    if error is not None:
        rid = error.request_id
    else:
        rid = (
            request_id(response, candidate.target.secrets)
            if response is not None
            else None
        )
    ctx.attempts.append(
        Attempt(
            provider=candidate.model.provider.id,
            model=candidate.model.id,
            outcome="error" if error else "success",
            error=type(error).__name__ if error else None,
            status_code=response.status_code if response is not None else None,
            latency_ms=latency_ms,
            request_id=rid,
        )
    )


def _limited(target: Target, timeouts: dict[str, float]) -> bool:
    """Whether the caller's ``timeout`` or ``deadline`` gave this attempt less
    time than the provider's own: its timeouts are then the caller's doing."""
    provider = target.model.provider
    return timeouts["read"] < provider.timeout or timeouts["connect"] < min(
        provider.connect_timeout, provider.timeout
    )


def _cut(base: dict[str, float], left: float | None) -> dict[str, float]:
    """The attempt's timeouts, none longer than the time left in the call."""
    if left is None or left >= max(base.values()):
        return base
    left = max(left, LATE)
    return {name: min(value, left) for name, value in base.items()}
