"""API tokens' rate limits counted on Redis: one GCRA script per request.

The generic cell rate algorithm keeps one number per token, its theoretical
arrival time: a limit of L a minute admits a burst of L and then one request
every 60/L seconds, for every process and host together, with no window
edge where 2L could pass. Time is Redis' own (``TIME``), so hosts' clocks
do not matter. When Redis cannot be reached, each process counts alone
(`RateWindows`), as without shared state.
"""

from __future__ import annotations

import time

from .._access import RateWindows
from .link import RedisLink, StateDown

__all__ = ["GCRA", "RedisRateLimiter"]

GCRA = """
-- KEYS[1]: the token's arrival time. ARGV: emission interval (microseconds,
-- 60 s / limit), burst tolerance (microseconds). Returns 0 when admitted,
-- else the microseconds to wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tolerance then
  return tat - now - tolerance
end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX',
           math.ceil((new - now) / 1000) + 1000)
return 0
"""


class RedisRateLimiter:
    """`RateLimiter` over Redis, shared by every process.

    Args:
        link: The Redis.
        prefix: Key prefix.
    """

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self._prefix = prefix
        self._local = RateWindows()  # while Redis cannot be reached

    def __repr__(self) -> str:
        return f"RedisRateLimiter({self.link.target})"

    def admit(self, token_id: str, per_minute: int, now: float) -> float | None:
        """Count a request of ``token_id``; None when admitted, else seconds
        to wait."""
        key, args = self._call(token_id, per_minute)
        try:
            wait = self.link.run(GCRA, key, args)
        except StateDown:
            return self._local.admit(token_id, per_minute, time.monotonic())
        return None if not wait else int(wait) / 1_000_000

    async def aadmit(self, token_id: str, per_minute: int, now: float) -> float | None:
        """`admit` through the running loop's asyncio client."""
        key, args = self._call(token_id, per_minute)
        try:
            wait = await self.link.arun(GCRA, key, args)
        except StateDown:
            return self._local.admit(token_id, per_minute, time.monotonic())
        return None if not wait else int(wait) / 1_000_000

    def _call(self, token_id: str, per_minute: int) -> tuple[list[str], list[int]]:
        interval = 60_000_000 // per_minute
        tolerance = 60_000_000 - interval  # a burst of per_minute at once
        return [f"{self._prefix}rate:{token_id}"], [interval, tolerance]
