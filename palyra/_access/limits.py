"""Each API token's own rate limit: requests per minute.

`RateWindows` counts in this process only (a token used by two processes
gets its limit in each), in one-minute windows starting at the token's
first request after the last window ended; thread-safe. A client with
shared state counts on Redis instead (``palyra._state.limits``), through
the `RateLimiter` seam.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["RateLimiter", "RateWindows"]

_WINDOW = 60.0
_MAX_TOKENS = 100_000  # windows kept before the idle ones are dropped


class RateLimiter(Protocol):
    """Counts a token's requests: None when one is admitted, else the
    seconds to wait (``now``: monotonic seconds, for the local limiter).
    One that does I/O also has ``async def aadmit`` (same arguments), which
    `TokenService.averify` awaits on an event loop."""

    def admit(self, token_id: str, per_minute: int, now: float) -> float | None: ...


class RateWindows:
    """Per-token request counts in one-minute windows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # id -> (start, count)

    def admit(self, token_id: str, per_minute: int, now: float) -> float | None:
        """Count a request; None when admitted, else seconds to wait."""
        with self._lock:
            start, count = self._windows.get(token_id, (now, 0))
            if now - start >= _WINDOW:
                start, count = now, 0
            if count >= per_minute:
                return max(start + _WINDOW - now, 0.001)
            if len(self._windows) >= _MAX_TOKENS:
                self._forget(now)
            self._windows[token_id] = (start, count + 1)
            return None

    def _forget(self, now: float) -> None:  # lock held
        for key in [k for k, (s, _) in self._windows.items() if now - s >= _WINDOW]:
            del self._windows[key]
