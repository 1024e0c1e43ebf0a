"""What the network layer knows of the send in progress: its deadline, its secrets.

A driver marks each send to the network with `enter` and `leave` (the
request, the response head and, unless it streams, the body). Two things below httpx
read it, neither of which palyra calls directly:

- palyra's network streams (`palyra._core.connect`) cut each socket read and
  write to the time the attempt has left. httpx's ``read`` timeout restarts on
  every byte, so without this an upstream trickling its status line and
  headers one byte at a time could hold a call for as long as it liked.
- `SecretScrubber`, a logging filter on httpx's and httpcore's loggers, removes
  the call's credential from their records. httpcore's DEBUG log prints
  response headers verbatim, and an upstream may echo the key in one.

Outside a scope (a stream being read after its head, another library's own
httpx calls) both leave everything as it was. The scope lives in a ContextVar,
so threads and tasks each see their own send.
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar, Token
from typing import NamedTuple

from .._utils import redact

__all__ = [
    "HTTP_LOGGERS",
    "SecretScrubber",
    "Sending",
    "current",
    "enter",
    "install_scrubber",
    "leave",
    "time_left",
]

# The loggers of httpx and httpcore 1.x that can print what an upstream sent.
HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class Sending(NamedTuple):
    """One send in progress: when its time is up, and what must never be logged."""

    deadline: float | None  # time.perf_counter() value; None: no bound
    budget: float | None  # the seconds it was given, for messages
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Sending(budget={self.budget}, {len(self.secrets)} secrets)"


_CURRENT: ContextVar[Sending | None] = ContextVar("palyra_sending", default=None)


def current() -> Sending | None:
    """The send in progress in this thread or task, if any."""
    return _CURRENT.get()


def time_left() -> float | None:
    """Seconds the send in progress has left (may be negative), or None."""
    scope = _CURRENT.get()
    if scope is None or scope.deadline is None:
        return None
    return scope.deadline - time.perf_counter()


def enter(budget: float | None, secrets: tuple[str, ...]) -> Token[Sending | None]:
    """Mark a send: its network reads end within ``budget`` seconds from now.

    Returns the token `leave` takes (a pair of plain calls rather than a
    context manager: this runs on every call, and a generator-based one costs
    several times as much).
    """
    deadline = None if budget is None else time.perf_counter() + budget
    return _CURRENT.set(Sending(deadline, budget, secrets))


def leave(token: Token[Sending | None]) -> None:
    """End the send `enter` marked."""
    _CURRENT.reset(token)


class SecretScrubber(logging.Filter):
    """Removes the credential of the send in progress from a log record.

    It rewrites the record's message only when a secret (or something shaped
    like a key, as `palyra._utils.redact` finds them) is in it; records logged
    outside a palyra send pass untouched and cost one ContextVar read.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _CURRENT.get()
        if scope is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return True
        clean = redact(message, scope.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_SCRUBBER = SecretScrubber()
_installed = False
_install_lock = threading.Lock()


def install_scrubber() -> None:
    """Put `SecretScrubber` on httpx's and httpcore's loggers, once.

    A filter on a logger sees only what that very logger emits, so each of
    them gets it. Called when palyra makes its first network client: an app
    that never goes to the network keeps its logging untouched.
    """
    global _installed
    if _installed:
        return
    with _install_lock:
        if not _installed:
            for name in HTTP_LOGGERS:
                logging.getLogger(name).addFilter(_SCRUBBER)
            _installed = True
