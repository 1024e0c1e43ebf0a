"""What went wrong with an attempt, and what that allows.

Pure and light: `classify` turns a palyra error (or a raw httpx transport
error) into a `Failure` that says whether the same provider may be tried
again, whether another candidate may serve, and whether the provider's
breaker should hear of it. ``Retry-After`` parsing lives here too. Nothing
here imports tenacity: `palyra._core.retry` decides the waits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

import httpx

from .._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    BlockedAddressError,
    ContextWindowExceededError,
    CredentialError,
    OverloadedError,
)
from .._headers import header as _header
from .._headers import retry_after_seconds

__all__ = [
    "CREDENTIAL_CLASSES",
    "RETRYABLE_STATUSES",
    "Failure",
    "FailureClass",
    "classify",
    "retry_after_seconds",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""HTTP statuses worth another attempt; no other 4xx ever is."""


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
    BLOCKED = "blocked"
    UNKNOWN = "unknown"


CREDENTIAL_CLASSES = frozenset({FailureClass.AUTH_INVALID, FailureClass.PERMISSION})
"""Failures that say the provider refused its credential (a 401 or 403)."""


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
        caller: The caller's own doing: a timeout the caller's ``timeout`` or
            ``deadline`` cut below the provider's, or a request that was not
            valid HTTP. It never counts against the provider.
    """

    cls: FailureClass
    retryable: bool
    failover: bool
    status: int | None = None
    retry_after: float | None = None
    caller: bool = False

    @property
    def provider_fault(self) -> bool:
        """Whether this counts against the provider's breaker and health: not
        when the request itself was refused (the upstream is answering), nor
        when the caller's limits or input caused it."""
        return (
            self.failover and not self.caller and self.cls not in _NOT_PROVIDER_FAULTS
        )

    @property
    def reported(self) -> bool:
        """Whether the health window learns from this at all: not from a
        refused address (no upstream took part), nor from the caller's own
        failures (the upstream was not given a fair chance)."""
        return self.cls is not FailureClass.BLOCKED and not self.caller

    def by_caller(self, *, sendable: bool) -> Failure:
        """This failure, as the caller's doing; a request that could not be
        sent is not retried and no other candidate is tried."""
        return replace(
            self,
            caller=True,
            retryable=self.retryable and sendable,
            failover=self.failover and sendable,
        )


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
# Failures another candidate may survive that say nothing bad about the upstream.
_NOT_PROVIDER_FAULTS = frozenset({FailureClass.CONTEXT_OVERFLOW, FailureClass.BLOCKED})


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
    if isinstance(error, BlockedAddressError):
        return FailureClass.BLOCKED  # before APIConnectionError: never retried
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
