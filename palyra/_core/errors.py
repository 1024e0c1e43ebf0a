"""Typed errors for what a driver reports: transport failures, refused
addresses, failed lookups, and a call deadline that passed."""

from __future__ import annotations

import httpx

from .._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BlockedAddressError,
)
from .._providers import Target
from .context import CallContext
from .netguard import BlockedAddress, LookupFailed

__all__ = ["deadline_error", "describe_error", "transport_error"]


def transport_error(target: Target, exc: Exception | None) -> APIError:
    """The typed error for a failure before any response arrived."""
    if isinstance(exc, BlockedAddress):
        hint = "set allow_private_base_url = true on the provider if this is intended"
        return target.fail(
            BlockedAddressError,
            f"refused to connect to {exc.host!r}: it {exc.reason}; {hint}",
            host=exc.host,
            reason=exc.reason,
        )
    if isinstance(exc, LookupFailed):
        error = target.fail(APIConnectionError, f"could not reach upstream: {exc}")
        # The resolver's own exception says most (it may be the caller's
        # code); httpx's errors are never chained: they hold the headers.
        error.__cause__ = exc.error
        return error
    if isinstance(exc, httpx.TimeoutException):
        return target.fail(
            APITimeoutError, f"upstream did not answer in time ({describe_error(exc)})"
        )
    if isinstance(exc, httpx.LocalProtocolError):
        # h11's reason quotes the offending header, which may hold a secret.
        return target.fail(
            APIConnectionError,
            "the request is not valid HTTP and was not sent (LocalProtocolError);"
            " check the provider's headers and base_url",
        )
    detail = describe_error(exc) if exc is not None else "no response"
    return target.fail(APIConnectionError, f"could not reach upstream ({detail})")


def describe_error(exc: BaseException) -> str:
    """``Type: reason``; httpx errors sometimes keep the reason only in the cause."""
    reason = ""
    seen: BaseException | None = exc
    while seen is not None and not reason:
        reason = str(seen)
        seen = seen.__cause__ or seen.__context__
    if reason.startswith("Cancelled via cancel scope"):
        reason = ""  # anyio's wording for an async timeout: no news to the reader
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def deadline_error(ctx: CallContext, target: Target, cause: APIError) -> APIError:
    """The error of an attempt the call's deadline ended (built before that
    attempt is recorded, which counts it as sent)."""
    sent = len(ctx.attempts) + 1
    error = target.fail(
        APITimeoutError,
        f"call deadline of {ctx.seconds or 0:g}s passed after {sent} attempt(s)"
        f" ({cause.message})",
    )
    error.request_id = cause.request_id
    return error
