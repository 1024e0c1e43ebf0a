"""Retry decisions: what went wrong, whether to try again, and how long to wait.

Pure: nothing here sleeps, reads the network or keeps state between calls. The
pipeline asks `classify` what a failure was and `RetryPolicy.decide` whether and
when to try the same provider again; the sync and async drivers do the sleeping
and failover across providers stays in the core.

This is the only module that imports tenacity. ``import palyra`` does not load
it: the pipeline imports this module lazily, on the first failed attempt.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from enum import StrEnum
from typing import TYPE_CHECKING

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

from .._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ContextWindowExceededError,
    CredentialError,
    OverloadedError,
)

if TYPE_CHECKING:
    from .._config import ProviderConfig

__all__ = [
    "RETRYABLE_STATUSES",
    "Failure",
    "FailureClass",
    "RetryPolicy",
    "classify",
    "retry_after_seconds",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""HTTP statuses worth another attempt; no other 4xx ever is."""

DEFAULT_RETRY_AFTER_CAP = 60.0
JITTER_SPREAD = 0.25
"""A backoff sleep is shortened by up to this fraction, so it never passes the cap
and callers that failed together do not retry together."""


class FailureClass(StrEnum):
    """What kind of failure an attempt ended in."""

    AUTH_INVALID = "auth_invalid"
    PERMISSION = "permission"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_REQUEST = "bad_request"
    CONTEXT_OVERFLOW = "context_overflow"
    CONTENT_FILTER = "content_filter"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Failure:
    """One classified failure and what it allows.

    Attributes:
        cls: The failure class.
        retryable: Another attempt at the same provider and model may succeed.
        failover: Another candidate may succeed. For ``context_overflow`` only a
            model with a larger context window qualifies; the router must check.
        status: The upstream HTTP status, when there was one.
        retry_after: Seconds the upstream asked us to wait, when it said so.
    """

    cls: FailureClass
    retryable: bool
    failover: bool
    status: int | None = None
    retry_after: float | None = None

    @property
    def provider_fault(self) -> bool:
        """Whether this counts against the provider's breaker and health: not
        when the request itself was refused (the upstream is answering)."""
        return self.failover and self.cls is not FailureClass.CONTEXT_OVERFLOW


_CONTEXT = re.compile(
    r"context_length_exceeded|maximum context length|prompt is too long"
    r"|context (?:window|limit)|maximum number of tokens allowed",
    re.IGNORECASE,
)
_CONTENT = re.compile(
    r"content_filter|content[ _]policy|content management policy|safety system"
    r"|responsibleaipolicyviolation",
    re.IGNORECASE,
)
_QUOTA = re.compile(
    r"insufficient[ _]quota|exceeded your current quota|quota (?:has been )?exhausted"
    r"|billing|credit balance|out of credits",
    re.IGNORECASE,
)
# Codes or types that settle quota versus rate limit whatever the wording says:
# some upstreams word per-minute limits as "exceeded your current quota".
_QUOTA_CODES = frozenset(
    {"insufficient_quota", "billing_error", "billing_hard_limit_reached"}
)
_RATE_CODES = frozenset({"rate_limit_exceeded", "rate_limit_error"})

_STATUS_CLASS = {
    401: FailureClass.AUTH_INVALID,
    402: FailureClass.QUOTA_EXHAUSTED,
    403: FailureClass.PERMISSION,
    404: FailureClass.NOT_FOUND,
    408: FailureClass.SERVER_ERROR,
    409: FailureClass.SERVER_ERROR,
    410: FailureClass.NOT_FOUND,
    413: FailureClass.BAD_REQUEST,
    422: FailureClass.BAD_REQUEST,
    429: FailureClass.RATE_LIMITED,
    529: FailureClass.OVERLOADED,
}
_ALWAYS_RETRYABLE = frozenset(
    {
        FailureClass.TIMEOUT,
        FailureClass.CONNECTION,
        FailureClass.RATE_LIMITED,
        FailureClass.OVERLOADED,
    }
)
# Errors caused by the request itself: another candidate would fail the same way.
_NO_FAILOVER = frozenset({FailureClass.BAD_REQUEST, FailureClass.CONTENT_FILTER})


def classify(
    error: BaseException,
    headers: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
) -> Failure:
    """Classify a failed attempt.

    Args:
        error: A palyra error (or a raw httpx transport error).
        headers: The response headers, when a response arrived; read for
            ``retry-after-ms``, ``Retry-After`` and ``x-should-retry: false``.
        now: Epoch seconds, for a ``Retry-After`` HTTP date (default: the clock).
    """
    status = error.status_code if isinstance(error, APIStatusError) else None
    cls = _class_of(error, status)
    retryable = cls in _ALWAYS_RETRYABLE or (
        cls is FailureClass.SERVER_ERROR and status in RETRYABLE_STATUSES
    )
    failover = cls not in _NO_FAILOVER
    if cls is FailureClass.UNKNOWN and not isinstance(error, APIError):
        failover = False  # a bug or misuse: another provider would only hide it
    retry_after = None
    if headers:
        if (_header(headers, "x-should-retry") or "").strip().lower() == "false":
            retryable = False
        retry_after = retry_after_seconds(
            headers, now=time.time() if now is None else now
        )
    return Failure(cls, retryable, failover, status, retry_after)


def _class_of(error: BaseException, status: int | None) -> FailureClass:
    if isinstance(error, APITimeoutError | httpx.TimeoutException):
        return FailureClass.TIMEOUT
    if isinstance(error, APIConnectionError | httpx.TransportError):
        return FailureClass.CONNECTION  # StreamInterruptedError included
    if isinstance(error, ContextWindowExceededError):
        return FailureClass.CONTEXT_OVERFLOW
    if isinstance(error, CredentialError):
        return FailureClass.AUTH_INVALID
    if not isinstance(error, APIError):
        return FailureClass.UNKNOWN
    codes = {(error.code or "").lower(), (error.type or "").lower()}
    text = f"{error.message} {error.code or ''} {error.type or ''}"
    if isinstance(error, OverloadedError) or "overloaded_error" in codes:
        return FailureClass.OVERLOADED
    if status in (400, 402, 429) and (
        codes & _QUOTA_CODES or (not codes & _RATE_CODES and _QUOTA.search(text))
    ):
        return FailureClass.QUOTA_EXHAUSTED
    if status in (400, 413, 422):
        if _CONTEXT.search(text):
            return FailureClass.CONTEXT_OVERFLOW
        if _CONTENT.search(text):
            return FailureClass.CONTENT_FILTER
        return FailureClass.BAD_REQUEST
    if status is None:
        return FailureClass.UNKNOWN  # e.g. a 2xx body that is not the promised shape
    if status >= 500:
        return _STATUS_CLASS.get(status, FailureClass.SERVER_ERROR)
    return _STATUS_CLASS.get(status, FailureClass.UNKNOWN)


def retry_after_seconds(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the upstream asked to wait, or None when it did not say (usably).

    ``retry-after-ms`` (milliseconds, OpenAI) wins over ``Retry-After``, which is
    either seconds (integer or decimal) or an HTTP date, taken relative to
    ``now`` (epoch seconds). A time in the past means zero.
    """
    millis = _number(_header(headers, "retry-after-ms"))
    if millis is not None:
        return max(millis / 1000, 0.0)
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000": UTC by RFC 5322
    return max(when.timestamp() - now, 0.0)


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _number(value: str | None) -> float | None:
    # Stricter than float(): "inf", "nan", "1e9" and "1_000" are not delays.
    if value is None or not _NUMBER.fullmatch(value.strip()):
        return None
    return float(value)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not isinstance(headers, httpx.Headers):
        # A plain dict is case-sensitive; HTTP header names are not.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try the same provider again, and after how long.

    Args:
        max_retries: Retries after the first attempt.
        backoff: First backoff sleep, in seconds; it doubles on each retry.
        backoff_max: Longest backoff sleep, in seconds.
        retry_after_cap: Longest wait honoured from ``Retry-After``, in seconds.
        deadline: Seconds the whole call may take, retries and sleeps included.
        jitter: Returns a factor in [0, 1); a backoff sleep is shortened by
            ``JITTER_SPREAD`` times it. Inject a constant for exact tests.
    """

    max_retries: int = 2
    backoff: float = 0.15
    backoff_max: float = 8.0
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP
    deadline: float | None = None
    jitter: Callable[[], float] = random.random
    _engine: Retrying = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if min(self.backoff, self.backoff_max, self.retry_after_cap) < 0:
            raise ValueError("backoff, backoff_max and retry_after_cap must be >= 0")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be > 0")
        # tenacity's own policy objects make the stop and backoff decisions; they
        # are driven with a hand-built RetryCallState because the pipeline is
        # sans-I/O and never lets tenacity call, sleep or raise. Jitter is ours:
        # tenacity's jittered waits call the random module and cannot be injected.
        stop: stop_base = stop_after_attempt(self.max_retries + 1)
        if self.deadline is not None:
            stop = stop | stop_before_delay(self.deadline)
        wait = wait_exponential(multiplier=self.backoff, max=self.backoff_max)
        object.__setattr__(self, "_engine", Retrying(stop=stop, wait=wait))

    @classmethod
    def from_provider(
        cls,
        config: ProviderConfig,
        *,
        deadline: float | None = None,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
    ) -> RetryPolicy:
        """The policy for one provider's configured retries and backoff."""
        return cls(
            max_retries=config.max_retries,
            backoff=config.retry_backoff,
            backoff_max=config.retry_backoff_max,
            retry_after_cap=retry_after_cap,
            deadline=deadline,
        )

    def decide(self, attempt: int, failure: Failure, elapsed: float) -> float | None:
        """Seconds to sleep before the next attempt, or None to stop retrying.

        Args:
            attempt: Attempts made so far (1 after the first one failed).
            failure: How the last attempt failed.
            elapsed: Seconds since the call started.

        Stops when the failure is not retryable, when ``max_retries`` retries
        were made, or when the sleep would reach the deadline. The wait is the
        upstream's ``Retry-After`` (at most ``retry_after_cap``) when given, else
        exponential backoff with jitter, at most ``backoff_max``. A
        ``Retry-After`` longer than the cap stops retrying at once.
        """
        if not failure.retryable:
            return None
        state = RetryCallState(self._engine, None, (), {})
        state.attempt_number = attempt
        state.start_time = 0.0
        state.outcome_timestamp = max(elapsed, 0.0)
        if failure.retry_after is not None:
            if failure.retry_after > self.retry_after_cap:
                # Asked to stay away longer than we may wait: another candidate
                # (or the caller) is better served than a sleep that ends early.
                return None
            wait = failure.retry_after
        else:
            factor = min(max(self.jitter(), 0.0), 1.0)
            wait = float(self._engine.wait(state)) * (1 - JITTER_SPREAD * factor)
        state.upcoming_sleep = wait
        return None if self._engine.stop(state) else wait
