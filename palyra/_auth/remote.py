"""Auth's conversations with servers, as flows: key validation, the code
exchange, token refresh and revocation.

Each builds its requests, yields them as `Exchange` steps and turns what came
back into a result or a typed error. Transport errors are retried briefly,
within the operation's deadline; statuses are not, except where a standard
says a retry is fine (revocation). Nothing here touches the vault or the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import httpx

from .._config import ProviderConfig
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    status_error_class,
)
from .._utils import excerpt
from .oauth_wire import Tokens, read_tokens, revocation_result
from .steps import AuthFlow, Exchange, Pause

__all__ = ["exchange_tokens", "revoke_token", "validate_key"]

# The transport errors a send can end with (httpx's, and the network guard's
# refusals, which are OSErrors).
TRANSPORT_ERRORS = (httpx.TransportError, OSError)
EXCHANGE_BUDGET = 10.0  # seconds one request may take at most
_ANTHROPIC_VERSION = "2023-06-01"


class Deadline:
    """When an operation must end, and what each request may take of it."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left (never below zero)."""
        return max(self.at - time.monotonic(), 0.0)

    def budget(self) -> float:
        """Seconds the next request may take.

        Raises:
            APITimeoutError: the deadline has passed.
        """
        left = self.left()
        if left <= 0.01:
            raise APITimeoutError(f"the operation took longer than {self.seconds} s")
        return min(left, EXCHANGE_BUDGET)


def models_request(provider: ProviderConfig, key: str) -> httpx.Request:
    """The request that proves a key works: the provider's model list.

    OpenAI-compatible: ``GET {base}/models`` with Bearer. Anthropic: ``GET
    {base}/v1/models`` (``{base}/models`` when the base ends in ``/v1``) with
    ``x-api-key`` (or Bearer, for an OAuth token or a provider set so).
    """
    base = provider.effective_base_url.rstrip("/")
    headers = {"accept": "application/json", "user-agent": "palyra"}
    headers.update(
        {k: v for k, v in provider.headers.items() if k.lower() != "anthropic-beta"}
    )
    style = provider.effective_auth_header
    if provider.kind == "anthropic":
        url = base + ("/models" if base.endswith("/v1") else "/v1/models")
        headers["anthropic-version"] = _ANTHROPIC_VERSION
    else:
        url = base + "/models"
    if style == "x-api-key":
        headers["x-api-key"] = key
    else:
        headers["authorization"] = f"Bearer {key}"
    return httpx.Request("GET", url, headers=headers)


def validate_key(
    provider: ProviderConfig, key: str, deadline: Deadline, tries: int = 3
) -> AuthFlow[None]:
    """Ask the provider's model list whether ``key`` works.

    Raises:
        AuthenticationError: 401. PermissionDeniedError: 403.
        RateLimitError: 429. InternalServerError: 5xx (unavailable).
        APIStatusError: another status. APIConnectionError: no answer.
    """
    request = models_request(provider, key)
    response = yield from _send_retrying(
        request, (key,), deadline, tries, provider.id, "nothing was stored"
    )
    if response.is_success:
        return
    raise _refusal(provider, response, key)


def _refusal(
    provider: ProviderConfig, response: httpx.Response, key: str
) -> APIStatusError:
    status = response.status_code
    said = excerpt(response.text, (key,), limit=240)
    if status in (401, 403):
        what = "refused the key" if status == 401 else "does not let this key in"
        message = f"provider {provider.id!r} {what}; nothing was stored ({said})"
    elif status == 429:
        message = f"provider {provider.id!r} rate limited the key check; try later"
    elif status >= 500:
        message = f"provider {provider.id!r} is unavailable (the key was not checked)"
    elif 300 <= status < 400:
        where = excerpt(response.headers.get("location", "nowhere"), (key,), 200)
        message = f"the models endpoint redirects to {where}; check base_url"
    else:
        message = f"the models endpoint answered unexpectedly ({said})"
    return status_error_class(status)(message, status_code=status, provider=provider.id)


def exchange_tokens(
    request: httpx.Request,
    secrets: tuple[str, ...],
    deadline: Deadline,
    provider: str,
    *,
    tries: int = 1,
) -> AuthFlow[Tokens]:
    """Send a token request (a code or a refresh token) and read the tokens.

    Raises:
        OAuthError: the endpoint refused, or answered without a usable token.
        APIConnectionError: no answer.
    """
    response = yield from _send_retrying(
        request, secrets, deadline, tries, provider, "no token was issued"
    )
    return read_tokens(response, provider=provider, secrets=secrets)


def revoke_token(
    request: httpx.Request,
    secrets: tuple[str, ...],
    deadline: Deadline,
    provider: str,
    tries: int = 3,
) -> AuthFlow[None]:
    """RFC 7009 revocation: tried up to ``tries`` times, 100 ms apart, on a
    5xx or no answer; any other refusal is final.

    Raises:
        OAuthError: the endpoint refused. APIConnectionError: no answer.
        InternalServerError: the endpoint kept failing.
    """
    for attempt in range(tries):
        last = attempt == tries - 1
        try:
            response: httpx.Response = yield Exchange(
                _fresh(request), secrets, deadline.budget()
            )
        except TRANSPORT_ERRORS as exc:
            if last:
                raise _unreachable(
                    request, exc, provider, "nothing was revoked or deleted"
                ) from None
            yield Pause(0.1)
            continue
        if response.status_code < 500:
            revocation_result(response, provider=provider, secrets=secrets)
            return
        if last:
            raise status_error_class(response.status_code)(
                "the revocation endpoint kept failing; nothing was deleted: call"
                " revoke() again to finish",
                status_code=response.status_code,
                provider=provider,
            )
        yield Pause(0.1)


def _send_retrying(
    request: httpx.Request,
    secrets: tuple[str, ...],
    deadline: Deadline,
    tries: int,
    provider: str,
    outcome: str,
) -> Generator[Any, Any, httpx.Response]:
    """The response to ``request``; transport errors are tried again (100 ms
    apart, ``tries`` times in all) while the deadline allows."""
    for attempt in range(tries):
        try:
            response: httpx.Response = yield Exchange(
                _fresh(request), secrets, deadline.budget()
            )
            return response
        except TRANSPORT_ERRORS as exc:
            if attempt == tries - 1 or deadline.left() < 0.2:
                raise _unreachable(request, exc, provider, outcome) from None
        yield Pause(0.1)
    raise AssertionError("unreachable")  # pragma: no cover


def _fresh(request: httpx.Request) -> httpx.Request:
    # A request can be sent once; a retry needs its own copy.
    return httpx.Request(
        request.method, request.url, headers=request.headers, content=request.content
    )


def _unreachable(
    request: httpx.Request, exc: BaseException, provider: str, outcome: str
) -> APIConnectionError:
    cls: Callable[..., APIConnectionError] = (
        APITimeoutError
        if isinstance(exc, httpx.TimeoutException)
        else APIConnectionError
    )
    where = f"{request.url.scheme}://{request.url.host}"
    if request.url.port:
        where += f":{request.url.port}"
    return cls(
        f"no answer from {where}{request.url.path} ({type(exc).__name__}); {outcome}",
        provider=provider,
    )
