"""Scheduled jobs with several processes: each fire runs once, in whichever
process claims it first (a ``SET NX`` per job, fire time and attempt,
kept for `CLAIM_TTL_S`). The others record the fire as skipped ("another
process claimed this fire"). When Redis cannot be reached, fires run
locally (the scheduler keeps working; a fire may then run in more than one
process).
"""

from __future__ import annotations

import uuid
from typing import Any

from .link import RedisLink

__all__ = ["CLAIM_TTL_S", "RedisFireClaims"]

CLAIM_TTL_S = 6 * 3600
"""Seconds a claim is kept: longer than any two processes' clocks or ticks
could disagree on one fire."""

_CLAIM = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])"


class RedisFireClaims:
    """`Scheduler.claim_fires`'s claim, over Redis.

    Args:
        link: The Redis.
        prefix: Key prefix.
    """

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self._prefix = prefix
        self._token = uuid.uuid4().hex

    def __repr__(self) -> str:
        return f"RedisFireClaims({self.link.target})"

    def claim(self, run: Any) -> bool:
        """Whether this process runs ``run``'s fire.

        Raises:
            StateDown: Redis cannot be reached (the scheduler runs it here).
        """
        at = int(run.scheduled_at.timestamp() * 1000)
        key = f"{self._prefix}cron:{len(run.job.id)}:{run.job.id}:{at}:{run.attempt}"
        return self.link.run(_CLAIM, [key], [self._token, CLAIM_TTL_S]) is not None
