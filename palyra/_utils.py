"""Small pure helpers: secret redaction, base-URL checks, excerpts."""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from ._addresses import address_problem, is_loopback_host

__all__: list[str] = []

EXCERPT_LIMIT = 240

# Patterns for credentials that upstreams echo back in error text. Order matters:
# the bearer rule must run before the generic `token=` rule eats its value.
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer <redacted>"),
    # Not \b: "req_sk-..." has no word boundary before "sk-".
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{8,}"), "<redacted>"),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|access_token|refresh_token|token|secret|password)"
            r"\"?\s*[=:]\s*\"?)[^\s&,;\"')\]}]+"
        ),
        r"\1<redacted>",
    ),
    # A key in a query string (?key=..., Google's), or after a credential
    # header's name with a space ("x-api-key AKIA...").
    (re.compile(r"(?i)([?&;]key=)[^\s&#\"')\]}]+"), r"\1<redacted>"),
    (
        # Only a key-like value (12+ characters, a digit among them), so
        # "authorization failed" keeps its words.
        re.compile(
            r"(?i)\b((?:x-api-key|api-key|authorization)\s*[:=]?\s+)"
            r"(?!bearer\b)(?=[^\s]*\d)[^\s'\"]{12,}"
        ),
        r"\1<redacted>",
    ),
    # Shapes of well-known keys: Google API keys, AWS access key ids.
    (re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"), "<redacted>"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}"), "<redacted>"),
)


MIN_SECRET = 8
"""Shorter credentials (a dummy ``"test"``) are not searched for: removing
them would cut ordinary words apart, and they protect nothing."""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove credentials from text that may be shown to people or logged.

    Known secrets (the keys palyra itself sent) are removed first, wherever
    they stand as a whole token (not inside a longer run of letters and
    digits, so ``req_<key>`` loses the key but no word is cut apart); then
    anything that looks like a bearer token, an ``sk-`` key or a
    ``key=value`` credential.
    """
    for secret in secrets:
        if len(secret) >= MIN_SECRET and secret in text:
            text = _whole(secret).sub("<redacted>", text)
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=64)
def _whole(secret: str) -> re.Pattern[str]:
    # Cached: a client sends the same few keys again and again.
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])")


def excerpt(
    text: str, secrets: tuple[str, ...] = (), limit: int = EXCERPT_LIMIT
) -> str:
    """A redacted, single-line, bounded excerpt of upstream text."""
    flat = " ".join(text.split())
    if not flat:
        return "<empty>"
    flat = redact(flat, secrets)
    return flat if len(flat) <= limit else flat[:limit] + "…"


# RFC 9110 tokens for names; for values, visible ASCII with inner spaces or tabs
# (h11 refuses anything else, CR and LF above all: they would split a header).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[ \t]*[\x21-\x7e])*)?")
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)
_FRAMING_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
    }
)


def header_problem(name: str, value: str) -> str | None:
    """Why a header palyra is asked to send must not be, if so (never showing
    the value: it may be a secret)."""
    if not _HEADER_NAME.fullmatch(name):
        return "is not a valid header name"
    lower = name.lower()
    if lower in CREDENTIAL_HEADERS:
        return (
            "carries credentials; configure them on the provider (api_key_env or"
            " auth_profile) instead"
        )
    if lower in _FRAMING_HEADERS:
        return "is set by palyra's HTTP client"
    if not _HEADER_VALUE.fullmatch(value):
        return (
            "has a value that is not visible ASCII on one line (a control"
            " character, line break, non-ASCII character or outer space)"
        )
    return None


def private_address_problem(url: str) -> str | None:
    """Why a base URL's literal IP must not be called without an opt-in, if so.

    The rules are `palyra._addresses.address_problem`'s. Host names are
    checked when a connection is opened (`palyra._core.netguard`), by the same
    function.
    """
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked once resolved
    problem = address_problem(host)
    return None if problem is None else f"points at {problem}"


def normalize_base_url(url: str) -> str:
    """Check and normalise a provider base URL.

    Rules: absolute ``https`` URL, or ``http`` only to a loopback host; no user
    info, query or fragment; trailing slashes removed.

    Raises:
        ValueError: with a message saying which rule was broken.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain user info (put credentials elsewhere)")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query string or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("http is only allowed for loopback hosts; use https")
    try:
        parts.port  # noqa: B018 - validates the port range
    except ValueError:
        raise ValueError("has an invalid port") from None
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def shown(value: object, limit: int = 40) -> str:
    """How an error message shows a caller's value: a short repr of a scalar,
    the type name of anything else. Never raises, even for an int too long for
    ``str()`` (past ``sys.get_int_max_str_digits()``), shown by its size."""
    if not isinstance(value, str | int | float) and value is not None:
        return type(value).__name__
    try:
        text = repr(value)
    except ValueError:
        return f"an int of {value.bit_length()} bits"  # type: ignore[union-attr]
    return text if len(text) <= limit else text[: limit - 1] + "…"


# The user info's password runs to the *last* "@": a password with an
# unencoded "@" or "/" still ends up hidden, never half shown.
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*):.*@", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:ssl_?)?password=)[^&#]*")


def without_password(url: str) -> str:
    """``url`` (a database URL) with its password, in the user info or a
    ``password=`` or ``sslpassword=`` query parameter, shown as ``***``."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", url, count=1))
