"""OAuth 2.0 on the wire, without I/O: the callback's query, the token and
revocation requests (`httpx.Request` objects, sent by whoever holds a
transport) and the reading of their answers.

No error text carries a secret: the server's words are redacted (the code,
verifier or refresh token sent, and palyra's usual patterns) and cut short,
and a raw exception (a JSON error quotes the document) is never chained.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import httpx

from .._exceptions import InvalidRequestError, OAuthError
from .._utils import excerpt
from .oauth import OAuthAttempt

__all__ = [
    "Callback",
    "Tokens",
    "callback_error",
    "code_request",
    "parse_callback",
    "read_tokens",
    "refresh_request",
    "revocation_request",
    "revocation_result",
]

MAX_ANSWER = 1024 * 1024  # a token answer is a few hundred bytes
_MAX_CALLBACK = 16 * 1024
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # it goes into a header later

# ------------------------------------------------------------------ callback


class Callback(NamedTuple):
    """What the authorization server's redirect brought back."""

    code: str | None
    state: str | None
    error: str | None
    error_description: str | None

    def __repr__(self) -> str:
        # The code and state are credentials until used: never printed.
        return f"Callback(error={self.error!r})"


def parse_callback(
    callback_url: str | None, *, code: str | None = None, state: str | None = None
) -> Callback:
    """Read ``code``, ``state``, ``error`` and ``error_description`` from a
    callback URL's query; ``code`` and ``state`` given here win.

    Raises:
        InvalidRequestError: no state, neither a code nor an error, a
            parameter given twice, or a URL that cannot be read.
    """
    found = _callback_query(callback_url) if callback_url is not None else {}
    if code is not None:
        found["code"] = code
    if state is not None:
        found["state"] = state
    values = {key: found.get(key) or None for key in Callback._fields}
    if values["state"] is None:
        raise InvalidRequestError(
            "state: missing: the callback has no state parameter (pass the whole"
            " callback URL, or state=)"
        )
    if values["code"] is None and values["error"] is None:
        raise InvalidRequestError(
            "code: missing: the callback has neither code nor error"
        )
    return Callback(**values)


def _callback_query(url: str) -> dict[str, str]:
    if not isinstance(url, str) or len(url) > _MAX_CALLBACK:
        raise InvalidRequestError(
            f"callback_url: must be a URL of at most {_MAX_CALLBACK} characters"
        )
    problem = ""
    try:
        query = parse_qs(urlsplit(url).query, keep_blank_values=True, max_num_fields=64)
    except ValueError:
        problem = "callback_url: is not a URL whose query can be read"
        query = {}
    if problem:
        raise InvalidRequestError(problem)
    found = {}
    for key in Callback._fields:
        items = query.get(key, [])
        if len(items) > 1:
            raise InvalidRequestError(
                f"{key}: given more than once in the callback URL"
            )
        if items:
            found[key] = items[0]
    return found


def callback_error(callback: Callback, provider: str) -> OAuthError:
    """The error an ``error=`` callback reports (its description redacted
    and cut short; an error code that is no RFC 6749 code shows as
    ``invalid``)."""
    scrub = tuple(s for s in (callback.code, callback.state) if s)
    head = "the authorization server refused"
    return _refused(head, callback.error, callback.error_description, scrub, provider)


def _refused(
    head: str,
    error: Any,
    description: Any,
    scrub: tuple[str, ...],
    provider: str | None,
) -> OAuthError:
    """An OAuthError from RFC 6749 §5.2 ``error`` and ``error_description``
    values, whatever types the server sent."""
    if not isinstance(error, str):
        return OAuthError(f"{head} without an RFC 6749 error", provider=provider)
    code = error if _ERROR_CODE.fullmatch(error) else "invalid"
    text = None
    if isinstance(description, str) and description.strip():
        text = excerpt(description, scrub)
    message = f"{head}: {code}" + (f": {text}" if text else "")
    return OAuthError(message, error=code, error_description=text, provider=provider)


# ------------------------------------------------------------ token endpoint


def code_request(attempt: OAuthAttempt, code: str) -> httpx.Request:
    """The token request exchanging ``code`` for tokens (RFC 6749 §4.1.3
    with the PKCE verifier); the client secret, if any, goes in the body."""
    if not isinstance(code, str) or not code:
        raise InvalidRequestError("code: must be a non-empty string")
    client = attempt.client
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": attempt.redirect_uri,
        "client_id": client.client_id,
        "code_verifier": attempt.code_verifier,
    }
    if client.client_secret:
        form["client_secret"] = client.client_secret
    return _post(client.token_url, form)


def refresh_request(
    token_url: str,
    refresh_token: str,
    *,
    client_id: str | None,
    client_secret: str | None,
    scopes: Sequence[str],
) -> httpx.Request:
    """The token request trading a refresh token for new tokens (RFC 6749 §6)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client_id:
        form["client_id"] = client_id
    if client_secret:
        form["client_secret"] = client_secret
    if scopes:
        form["scope"] = " ".join(scopes)
    return _post(token_url, form)


def revocation_request(
    revocation_url: str,
    token: str,
    *,
    client_id: str | None,
    client_secret: str | None,
    hint: str | None = "refresh_token",
) -> httpx.Request:
    """The RFC 7009 request revoking ``token`` (a refresh token by default:
    revoking it ends its access tokens too)."""
    form = {"token": token}
    if hint:
        form["token_type_hint"] = hint
    if client_id:
        form["client_id"] = client_id
    if client_secret:
        form["client_secret"] = client_secret
    return _post(revocation_url, form)


def _post(url: str, form: dict[str, str]) -> httpx.Request:
    # Form-encoded, asking for JSON; no cookies: a bare request carries none.
    return httpx.Request("POST", url, data=form, headers={"Accept": "application/json"})


@dataclass(frozen=True, kw_only=True)
class Tokens:
    """What a token endpoint granted. The repr shows no token.

    Attributes:
        access_token: The new access token.
        refresh_token: A new refresh token, or None if none came (keep the
            old one).
        expires_in: Seconds the access token lives, if the server said.
        scopes: The scopes granted, if the server said (else empty).
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: float | None = None
    scopes: tuple[str, ...] = ()


def read_tokens(
    response: httpx.Response, *, provider: str, secrets: Sequence[str] = ()
) -> Tokens:
    """The tokens in a token endpoint's answer (already read).

    ``secrets`` (the code, verifier or refresh token sent) are scrubbed from
    any text kept, on top of palyra's usual redaction.

    Raises:
        OAuthError: the endpoint refused (with ``error`` and
            ``error_description`` when it sent RFC 6749 fields), or answered
            something that is not a token answer.
    """
    scrub = tuple(s for s in secrets if s)
    data = _json_answer(response, "token endpoint", scrub, provider)
    refused = isinstance(data, dict) and "error" in data and "access_token" not in data
    if not response.is_success or refused:
        raise _refusal("token endpoint", response, data, scrub, provider)
    if not isinstance(data, dict):
        raise OAuthError(
            "token endpoint's answer is not a JSON object", provider=provider
        )
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise OAuthError(
            "token endpoint's answer has no access_token", provider=provider
        )
    refresh = data.get("refresh_token")
    if isinstance(refresh, str) and not refresh.strip():
        refresh = None  # blank: no new refresh token came
    scope = data.get("scope")
    return Tokens(
        access_token=_token(access, "access_token", provider),
        refresh_token=None
        if refresh is None
        else _token(refresh, "refresh_token", provider),
        # expired_in: a misspelling some servers send (the reference reads it).
        expires_in=_seconds(data.get("expires_in", data.get("expired_in")), provider),
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
    )


def revocation_result(
    response: httpx.Response, *, provider: str, secrets: Sequence[str] = ()
) -> None:
    """Check a revocation endpoint's answer (already read): any 2xx is done
    (RFC 7009 §2.2; the body is ignored).

    A 5xx (503 above all) asks to try again later: retry it, and transport
    failures, before calling this; here it is an error like any other.

    Raises:
        OAuthError: the endpoint refused (``unsupported_token_type``...).
    """
    if response.is_success:
        return
    scrub = tuple(s for s in secrets if s)
    data = _json_answer(response, "revocation endpoint", scrub, provider)
    raise _refusal("revocation endpoint", response, data, scrub, provider)


def _refusal(
    what: str,
    response: httpx.Response,
    data: Any,
    scrub: tuple[str, ...],
    provider: str,
) -> OAuthError:
    fields = data if isinstance(data, dict) else {}
    head = f"{what} refused (HTTP {response.status_code})"
    return _refused(
        head, fields.get("error"), fields.get("error_description"), scrub, provider
    )


def _json_answer(
    response: httpx.Response, what: str, scrub: tuple[str, ...], provider: str
) -> Any:
    content = response.content
    status = response.status_code
    if len(content) > MAX_ANSWER:
        raise OAuthError(
            f"{what}'s answer (HTTP {status}) is over 1 MiB", provider=provider
        )
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        pass  # the document may quote secrets: it is not chained
    kind = excerpt(response.headers.get("content-type") or "no content type", limit=80)
    text = excerpt(response.text, scrub, limit=80)
    raise OAuthError(
        f"{what} answered HTTP {status} with {kind}, not JSON: {text}",
        provider=provider,
    )


def _token(value: Any, name: str, provider: str) -> str:
    if not isinstance(value, str) or not _TOKEN_CHARS.fullmatch(value):
        raise OAuthError(
            f"token endpoint's {name} is not a string of visible ASCII",
            provider=provider,
        )
    return value


def _seconds(value: Any, provider: str) -> float | None:
    if value is None:
        return None
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e18 else math.nan
    elif isinstance(value, str) and len(value) < 32:
        try:
            number = float(value.strip())
        except ValueError:
            number = math.nan
    if not math.isfinite(number) or number < 0:
        raise OAuthError(
            "token endpoint's expires_in is not a number of seconds", provider=provider
        )
    return number
