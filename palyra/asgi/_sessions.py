"""The console's browser sessions: a cookie holding a random id, nothing
else, and a CSRF token per session (pure: no I/O, a clock given).

A session is made when an ``admin``-scoped API token is presented at login;
the browser keeps only the session's id, in a cookie that is ``HttpOnly``,
``SameSite=Strict``, scoped to the console's path, ``Secure`` unless served
on loopback, and expires with the session. palyra keeps the id's SHA-256
(a leaked session table holds no usable cookie), the token's id, and the
session's CSRF token. Sessions slide: each use moves the expiry on, up to
an absolute limit from login; the token is checked again on every request
(revoked or expired, every session made with it ends).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import ip_address

__all__ = [
    "COOKIE",
    "Session",
    "SessionStore",
    "cookie_header",
    "cookie_of",
    "csrf_matches",
    "on_loopback",
]

COOKIE = "palyra_console"
IDLE_S = 30 * 60.0  # a session unused this long ends
ABSOLUTE_S = 12 * 3600.0  # and none lasts longer than this from its login
MOST = 1_000  # sessions kept at once; past it the least recently used go


@dataclass(slots=True)
class Session:
    """One signed-in browser: whose token, its CSRF token, its deadlines."""

    token_id: str
    csrf: str
    started: float
    expires: float

    def left(self, now: float) -> float:
        """Seconds until it ends (the cookie's ``Max-Age``)."""
        return max(self.expires - now, 0.0)


class SessionStore:
    """The sessions of one console (in memory: a restart signs everyone out).

    Args:
        idle: Seconds a session lives unused.
        absolute: Seconds a session lives at most.
        most: Sessions kept at once.
    """

    def __init__(
        self, idle: float = IDLE_S, absolute: float = ABSOLUTE_S, most: int = MOST
    ) -> None:
        self._idle, self._absolute, self._most = idle, absolute, most
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # by digest

    def __repr__(self) -> str:
        return f"SessionStore({len(self._sessions)} sessions)"

    def create(self, token_id: str, now: float) -> tuple[str, Session]:
        """A new session for ``token_id``: its cookie value (shown only
        here) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            token_id=token_id,
            csrf=secrets.token_urlsafe(32),
            started=now,
            expires=min(now + self._idle, now + self._absolute),
        )
        with self._lock:
            self._sessions[_digest(session_id)] = session
            while len(self._sessions) > self._most:
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session of a cookie's value, its expiry moved on (None:
        no such session, or it ended)."""
        if not session_id:
            return None
        key = _digest(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now >= session.expires:
                del self._sessions[key]
                return None
            session.expires = min(now + self._idle, session.started + self._absolute)
            self._sessions.move_to_end(key)
            return session

    def end(self, session_id: str | None) -> None:
        """Sign a browser out."""
        if session_id:
            with self._lock:
                self._sessions.pop(_digest(session_id), None)

    def end_token(self, token_id: str) -> int:
        """End every session made with a token (it was revoked); how many."""
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s.token_id == token_id]
            for key in keys:
                del self._sessions[key]
        return len(keys)


def csrf_matches(session: Session, given: str | None) -> bool:
    """Whether a request's CSRF token is its session's (constant time)."""
    return bool(given) and hmac.compare_digest(
        session.csrf.encode(), str(given).encode()
    )


def cookie_header(
    value: str, max_age: float, *, path: str, secure: bool
) -> tuple[bytes, bytes]:
    """The ``Set-Cookie`` header of a session (an empty value and
    ``max_age`` 0 clear it)."""
    parts = [
        f"{COOKIE}={value}",
        f"Path={path or '/'}",
        f"Max-Age={round(max_age)}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")


def cookie_of(header: str | None) -> str | None:
    """The session's id in a request's ``Cookie`` header."""
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def on_loopback(host: str | None) -> bool:
    """Whether the console is reached on loopback (its cookie may then go
    without ``Secure``: browsers treat http://127.0.0.1 as secure anyway)."""
    if not host:
        return False
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 else host
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    if name == "localhost":
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
