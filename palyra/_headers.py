"""What palyra reads from upstream response headers, and what it keeps.

`retry_after_seconds` reads the wait an upstream asks for (the retry layer and
the status errors read it the same way); `safe_headers` is the copy of a
response's headers an error may carry: nothing credential-like, every value
redacted and bounded.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC

import httpx

from ._utils import CREDENTIAL_HEADERS, redact

__all__ = ["retry_after_seconds", "safe_headers"]

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
# Names that may carry a credential or a session, whatever the upstream.
_SECRET_NAME = re.compile(r"(?i)auth|cookie|token|secret|key|session|signature")
_MAX_HEADERS = 64
_MAX_VALUE = 512


def retry_after_seconds(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the upstream asked to wait, or None when it did not say (usably).

    ``retry-after-ms`` (milliseconds, OpenAI) wins over ``Retry-After``, which is
    either seconds (integer or decimal) or an HTTP date, taken relative to
    ``now`` (epoch seconds). A time in the past means zero.
    """
    millis = _number(header(headers, "retry-after-ms"))
    if millis is not None:
        return max(millis / 1000, 0.0)
    raw = header(headers, "retry-after")
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


def _number(value: str | None) -> float | None:
    # Stricter than float(): "inf", "nan", "1e9" and "1_000" are not delays.
    if value is None or not _NUMBER.fullmatch(value.strip()):
        return None
    return float(value)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """One header's value, by its lower-case name, from any mapping."""
    value = headers.get(name)
    if value is None and not isinstance(headers, httpx.Headers):
        # A plain dict is case-sensitive; HTTP header names are not.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def safe_headers(
    headers: Mapping[str, str], secrets: tuple[str, ...] = ()
) -> dict[str, str]:
    """The headers an error may carry: names that could hold a credential or
    a session are left out, values are redacted (``secrets`` included) and
    cut to 512 characters, and at most 64 headers are kept."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in CREDENTIAL_HEADERS or _SECRET_NAME.search(lower):
            continue
        kept[lower] = redact(value[:_MAX_VALUE], secrets)
        if len(kept) == _MAX_HEADERS:
            break
    return kept
