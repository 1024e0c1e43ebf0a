"""The palyra exception tree.

Runtime failures of a call live under `APIError`; configuration and programming
mistakes sit beside it, so `except palyra.APIError` never hides a bug::

    PalyraError
    ├── APIError                      a call failed (provider, model, request id)
    │   ├── APIConnectionError        no usable HTTP response
    │   │   ├── APITimeoutError       a deadline passed
    │   │   ├── BlockedAddressError   the host's address is refused (never retried)
    │   │   └── StreamInterruptedError  the upstream stopped mid-stream
    │   ├── APIResponseValidationError  2xx body that is not what the API promises
    │   │   └── ResponseTooLargeError  an answer or event past a `limits` cap
    │   └── APIStatusError            non-2xx answer (status_code)
    │       ├── BadRequestError            400
    │       ├── AuthenticationError        401
    │       ├── PermissionDeniedError      403
    │       ├── NotFoundError              404
    │       ├── ConflictError              409
    │       ├── RequestTooLargeError       413
    │       ├── UnprocessableEntityError   422
    │       ├── RateLimitError             429
    │       └── InternalServerError        5xx
    │           └── OverloadedError        529 (Anthropic: overloaded, retryable)
    │   └── NoProviderAvailableError  every candidate's circuit breaker is open
    ├── BudgetExceededError           a budget refuses the call (no HTTP sent)
    ├── StateUnavailableError         shared state is down, fail_closed (no HTTP)
    ├── ContextWindowExceededError    prompt + output cannot fit (no HTTP sent)
    ├── UnsupportedCapabilityError    the model cannot do what was asked (no HTTP)
    ├── ModelNotFoundError            no such model or alias in the registry
    ├── CredentialError               no credential could be found for a provider
    ├── InvalidRequestError (also ValueError)  bad call input (no HTTP sent)
    ├── ClientClosedError (also RuntimeError)  a call on a closed client
    ├── LedgerError                   the usage ledger cannot be written or read
    ├── SchedulerError                the scheduler: ScheduleError, JobNotFoundError
    └── ConfigError (also ValueError) bad configuration, named by its path

Messages never contain secrets: upstream text is redacted and cut to an excerpt
before it reaches an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from ._wire import Attempt

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthProfileError",
    "AuthenticationError",
    "BadRequestError",
    "BlockedAddressError",
    "BudgetExceededError",
    "ClientClosedError",
    "ConfigError",
    "ConflictError",
    "ContextWindowExceededError",
    "CredentialError",
    "InternalServerError",
    "InvalidRequestError",
    "LedgerError",
    "ModelNotFoundError",
    "NoProviderAvailableError",
    "NotFoundError",
    "OAuthError",
    "OverloadedError",
    "PalyraError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "StreamInterruptedError",
    "UnprocessableEntityError",
    "UnsupportedCapabilityError",
    "VaultError",
]


class PalyraError(Exception):
    """Root of every error palyra raises."""


class _CallContextError(PalyraError):
    """An error about one call: it names the provider and model involved."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.request_id = message, request_id
        self.provider, self.model = provider, model
        # Every attempt and skipped candidate of the failed call, in order.
        self.attempts: list[Attempt] = []

    def __str__(self) -> str:
        where = _describe_target(self.provider, self.model, self.request_id)
        return f"{self.message} ({where})" if where else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def _describe_target(
    provider: str | None, model: str | None, request_id: str | None
) -> str:
    named = (("provider", provider), ("model", model), ("request_id", request_id))
    return ", ".join(f"{name}={value}" for name, value in named if value)


class APIError(_CallContextError):
    """A call to a provider failed.

    Attributes:
        provider: Provider id from the registry.
        model: Model id from the registry.
        request_id: The upstream request id, when the upstream sent one.
        body: The parsed error body (redacted), when there was one.
        code: The error code the upstream gave (``error.code``), if any.
        type: The error type the upstream gave (``error.type``), if any.
        attempts: Every attempt and skipped candidate of the call, in order
            (`Attempt`), so nothing recorded is lost when a call fails.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
        body: object | None = None,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, request_id=request_id)
        self.body = body
        self.code = code
        self.type = type


class APIConnectionError(APIError):
    """The upstream could not be reached or gave no usable HTTP response."""


class APITimeoutError(APIConnectionError):
    """A deadline passed while connecting to or waiting for the upstream."""


class BlockedAddressError(APIConnectionError):
    """The upstream's host resolved to an address palyra refuses to connect to.

    Checked on every new connection, on the very address the connection uses:
    special-purpose addresses (private, shared, link-local where cloud
    metadata lives, reserved, multicast..., and IPv6 forms embedding one) are
    refused unless the provider sets ``allow_private_base_url``; a
    ``localhost`` name must resolve to loopback, opt-in or not. Never
    retried; failover moves on to another provider.

    Attributes:
        host: The host name (or literal address) from the base URL.
        reason: Why the address is refused.
    """

    def __init__(self, message: str, *, host: str, reason: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.host = host
        self.reason = reason


class StreamInterruptedError(APIConnectionError):
    """The upstream stream ended before it said it was complete.

    Raised from the stream iterator; the chunks already yielded stay valid, but the
    answer is partial and must not be taken as finished.
    """


class NoProviderAvailableError(APIError):
    """No candidate may be called now: every candidate's circuit breaker is open.

    Attributes:
        retry_after: Seconds until the earliest breaker lets a probe through.
    """

    status_code: ClassVar[int] = 503

    def __init__(self, message: str, *, retry_after: float | None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class APIResponseValidationError(APIError):
    """The upstream answered 2xx with a body that is not the documented shape."""


class ResponseTooLargeError(APIResponseValidationError):
    """The upstream's answer passed a size cap of the ``limits`` table.

    Reading stops at the cap, so memory stays bounded. Like any answer of
    the wrong shape, it counts against the provider and is not retried;
    another candidate may serve. From a stream, it is raised by the iterator
    (or by the call, before the first chunk).

    Attributes:
        limit: The cap, in bytes.
        setting: Which cap: ``"max_event_bytes"`` (one server-sent event) or
            ``"max_response_bytes"`` (a whole answer).
    """

    def __init__(self, message: str, *, limit: int, setting: str, **kw: Any):
        super().__init__(message, **kw)
        self.limit = limit
        self.setting = setting


class APIStatusError(APIError):
    """The upstream answered with a non-2xx status.

    Attributes:
        status_code: The HTTP status of the upstream response.
        retry_after: Seconds the upstream asked to wait (``retry-after-ms`` or
            ``Retry-After``, read as the retry layer reads them), or None. It
            is kept even when palyra did not wait that long.
        headers: The response headers (lower-case names), without any that
            could carry a credential or a session, values redacted. Empty for
            an error that arrived inside a stream.
    """

    status_code: int = 0
    default_status: ClassVar[int] = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ):
        super().__init__(message, **kw)
        self.status_code = status_code or self.default_status
        self.retry_after = retry_after
        self.headers: dict[str, str] = headers or {}

    def __str__(self) -> str:
        where = _describe_target(self.provider, self.model, self.request_id)
        status = f"HTTP {self.status_code}"
        return (
            f"{status}: {self.message} ({where})"
            if where
            else f"{status}: {self.message}"
        )


class BadRequestError(APIStatusError):
    """400: the upstream rejected the request as malformed."""

    default_status = 400


class AuthenticationError(APIStatusError):
    """401: the credential was missing, invalid or expired."""

    default_status = 401


class PermissionDeniedError(APIStatusError):
    """403: the credential may not use this model or endpoint."""

    default_status = 403


class NotFoundError(APIStatusError):
    """404: the upstream does not know the model or endpoint."""

    default_status = 404


class ConflictError(APIStatusError):
    """409: the upstream reported a conflicting concurrent request."""

    default_status = 409


class RequestTooLargeError(APIStatusError):
    """413: the request body is larger than the upstream accepts."""

    default_status = 413


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but semantically invalid."""

    default_status = 422


class RateLimitError(APIStatusError):
    """429: rate limited or out of quota."""

    default_status = 429


class InternalServerError(APIStatusError):
    """5xx: the upstream failed."""

    default_status = 500


class ContextWindowExceededError(_CallContextError):
    """The prompt plus the requested output cannot fit the model's context window.

    Raised before any HTTP call.

    Attributes:
        prompt_tokens: The estimated prompt size.
        requested_output_tokens: The output budget asked for (0 when none).
        context_window: The model's context window.
    """

    def __init__(
        self,
        message: str,
        *,
        prompt_tokens: int,
        requested_output_tokens: int,
        context_window: int,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.prompt_tokens = prompt_tokens
        self.requested_output_tokens = requested_output_tokens
        self.context_window = context_window


class BudgetExceededError(_CallContextError):
    """A budget refuses the call before it is sent (issue 11).

    Attributes:
        policy, metric, scope, scope_value, window: Which budget (its id,
            ``usd`` or ``tokens``, ``global``, ``agent``... or ``tag:<key>``),
            whose (``"*"`` when global) and over what (``"day in UTC"``).
        spent, reserved, requested, limit: Settled in the window, held by
            calls in flight, this call's worst case (None: unpriced) and the
            hard limit (None: no hard limit).
        resets_at: When the window ends (rolling: when its oldest spending
            ages out); None: never.
        reason: ``"hard_limit"``, ``"unpriced"`` or ``"ledger_unavailable"``.
    """

    def __init__(
        self,
        message: str,
        *,
        policy: str,
        metric: str,
        scope: str,
        scope_value: str,
        window: str,
        spent: Decimal,
        reserved: Decimal,
        requested: Decimal | None,
        limit: Decimal | None,
        resets_at: datetime | None,
        reason: str,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.policy, self.metric, self.window = policy, metric, window
        self.scope, self.scope_value = scope, scope_value
        self.spent, self.reserved, self.requested = spent, reserved, requested
        self.limit, self.resets_at, self.reason = limit, resets_at, reason


class UnsupportedCapabilityError(_CallContextError):
    """The model (or its provider) cannot do what the request needs.

    Raised before any HTTP call.

    Attributes:
        capability: The missing capability, e.g. ``"vision"`` or ``"embeddings"``.
    """

    def __init__(self, message: str, *, capability: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.capability = capability


class ModelNotFoundError(_CallContextError):
    """No enabled model or alias of that name is in the registry."""


class CredentialError(_CallContextError):
    """No credential could be found for a provider; the message says how to add one."""


class VaultError(CredentialError):
    """The vault that holds secrets (the OS keyring) is missing, locked or
    failing; the message names the backend and how to fix it. palyra never
    falls back to keeping secrets in plain text."""


class AuthProfileError(CredentialError):
    """An auth profile cannot be used or kept: no profile of that id is
    visible, or the profile file is damaged or locked by another process.
    The message names the profile or the file and what to do."""


class OAuthError(CredentialError):
    """An OAuth 2.0 step failed: a wrong or reused ``state``, an unknown or
    expired attempt, an ``error=`` callback, or a token endpoint that refused
    the code, the verifier or the refresh token.

    Attributes:
        error: The server's ``error`` code (``invalid_grant``...), when it
            gave one.
        error_description: The server's explanation, redacted and cut short.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.error = error
        self.error_description = error_description


class InvalidRequestError(PalyraError, ValueError):
    """The call's input is invalid; the message names the bad field. No HTTP sent."""


class LedgerError(PalyraError):
    """The usage ledger could not be written or read; the message names its path."""


class ClientClosedError(PalyraError, RuntimeError):
    """A call was made on a client after ``close()`` (or the end of its ``with``
    block). Build a new `Palyra`, or keep the client open while it is used."""


class ConfigError(PalyraError, ValueError):
    """The configuration is invalid; the message names the path of each bad field.

    Attributes:
        errors: One ``(path, message)`` pair per problem found.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = [f"{path}: {msg}" if path else msg for path, msg in errors]
        head = "invalid palyra configuration"
        super().__init__(
            f"{head}: {lines[0]}"
            if len(lines) == 1
            else head + "\n" + "\n".join(f"  {line}" for line in lines)
        )


class OverloadedError(InternalServerError):
    """529: the upstream is overloaded (Anthropic); retryable."""

    default_status = 529


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    cls.default_status: cls
    for cls in (
        *(BadRequestError, AuthenticationError, PermissionDeniedError),
        *(NotFoundError, ConflictError, RequestTooLargeError),
        *(UnprocessableEntityError, RateLimitError),
    )
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP status, mirroring the OpenAI SDK."""
    if status_code == 529:
        return OverloadedError
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)
