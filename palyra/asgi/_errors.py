"""What an answer says when a request fails: the OpenAI error envelope, its
status, and the headers that tell an SDK whether to retry.

Every palyra error has a fixed place here; anything else is a 500 with the
request id, and its stack goes to the log, never to the caller.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from .._access import APITokenError
from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BudgetExceededError,
    ClientClosedError,
    ConfigError,
    ContextWindowExceededError,
    CredentialError,
    InvalidRequestError,
    ModelNotFoundError,
    NoProviderAvailableError,
    PalyraError,
    PermissionDeniedError,
    RateLimitError,
    UnsupportedCapabilityError,
)
from .._state import StateUnavailableError

__all__ = ["Problem", "problem_of"]

logger = logging.getLogger("palyra.asgi")

_PARAM = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")
# a capability a request field asked for: that field is the param to blame
_CAPABILITY_PARAM = {"n > 1": "n", "logprobs": "logprobs"}


class Problem(Exception):
    """A request the surface refuses: what the envelope and status say."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The OpenAI envelope."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def problem_of(exc: BaseException, request_id: str) -> Problem:
    """The answer to an exception raised while serving a request."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, PalyraError):
        found = _palyra(exc)
        if found is not None:
            return found
    logger.error(
        "palyra.asgi: request %s failed: %s",
        request_id,
        type(exc).__name__,
        exc_info=exc,
    )
    return Problem(
        500,
        f"palyra could not serve this request (request id {request_id})",
        type="server_error",
        code="internal_error",
    )


def _palyra(exc: PalyraError) -> Problem | None:
    message = str(exc)
    if isinstance(exc, APITokenError):
        return _token(exc, message)
    if isinstance(exc, BudgetExceededError):
        return Problem(
            429,
            message,
            type="insufficient_quota",
            code="budget_exceeded",
            headers={"x-should-retry": "false"},
        )
    if isinstance(exc, ContextWindowExceededError):
        return Problem(400, message, code="context_length_exceeded", param="messages")
    if isinstance(exc, UnsupportedCapabilityError):
        param = _CAPABILITY_PARAM.get(exc.capability, "model")
        return Problem(400, message, code="unsupported_capability", param=param)
    if isinstance(exc, ModelNotFoundError):
        return Problem(404, message, code="model_not_found", param="model")
    if isinstance(exc, InvalidRequestError):
        found = _PARAM.match(message)
        return Problem(400, message, param=found.group(1) if found else None)
    if isinstance(exc, NoProviderAvailableError):
        return Problem(
            503,
            message,
            type="server_error",
            code="no_provider_available",
            headers=_retry_after(exc.retry_after or 1.0),
        )
    if isinstance(exc, StateUnavailableError):  # shared state down, fail_closed
        return Problem(
            503,
            message,
            type="server_error",
            code="state_unavailable",
            headers=_retry_after(1.0),
        )
    if isinstance(exc, APITimeoutError):
        return Problem(504, message, type="server_error", code="timeout")
    if isinstance(exc, APIConnectionError | CredentialError | ConfigError):
        return Problem(502, message, type="server_error", code="upstream_unavailable")
    if isinstance(exc, APIResponseValidationError):  # an answer palyra cannot read
        return Problem(502, message, type="server_error", code="bad_upstream_answer")
    if isinstance(exc, APIStatusError):
        return _upstream(exc, message)
    if isinstance(exc, ClientClosedError):
        return Problem(503, message, type="server_error", code="shutting_down")
    return None


def _token(exc: APITokenError, message: str) -> Problem:
    types = {401: "invalid_api_key", 403: "access_error", 429: "rate_limit_error"}
    headers = {} if exc.retry_after is None else _retry_after(exc.retry_after)
    if exc.status == 401:
        headers["www-authenticate"] = "Bearer"
    return Problem(
        exc.status,
        message,
        type=types.get(exc.status, "invalid_request_error"),
        code=exc.code,
        headers=headers,
    )


def _upstream(exc: APIStatusError, message: str) -> Problem:
    """An upstream's refusal, as the caller should see it: palyra's own
    credential being refused is palyra's problem (502), not the caller's."""
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return Problem(502, message, type="server_error", code="upstream_auth")
    if isinstance(exc, RateLimitError):
        wait = getattr(exc, "retry_after", None) or 1.0
        return Problem(
            429,
            message,
            type="rate_limit_error",
            code=exc.code or "rate_limited",
            headers=_retry_after(wait),
        )
    status = exc.status_code
    if 400 <= status < 500:
        return Problem(
            status, message, code=exc.code, type=exc.type or "invalid_request_error"
        )
    return Problem(502, message, type="server_error", code="upstream_error")


def _retry_after(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(seconds)))}
