"""Shared state: what several processes and hosts must agree on (issue 16).

What it is for: budget reservations and spend per window kept on Redis, one
atomic Lua script per operation (``scripts``, ``windows``, ``budgets``,
``views``, ``reboot``), concurrent reserves of a process sharing round
trips (``batch``), settled off the call path (``settler``); circuit
breaker transitions shared through the core's breaker bus (``breakers``);
the ``/v1`` tokens' rate limits, one GCRA script per request (``limits``);
scheduled jobs' fires claimed once across processes (``cron``); OAuth
refresh locks (``locks``); all over one connection
object that is sync for threads and asyncio for loops (``link``), and the
choice a client makes from ``Palyra(state=)`` and ``[state]``
(``settings``). The in-process default needs none of it: a client without
``[state] backend = "redis"`` never imports this package's Redis parts, and
nothing here connects before a call needs it.

May import: the leaves (``_exceptions``, ``_config``), ``_governance`` (the
budget engine and policies it shares), ``_access`` (its rate-limit seam),
``_core``'s exports (the shared
breaker and the tracker it plugs into) and redis-py, lazily. Never the
core's internals: it joins a call through the budgets hook's `Work` and the
tracker's `BreakerBus`.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .breakers import RedisBreakers
from .budgets import SharedBudgets
from .cron import RedisFireClaims
from .errors import StateUnavailableError
from .limits import RedisRateLimiter
from .link import RedisLink, StateDown
from .parts import SharedReservation
from .settings import RedisState, chosen_state

__all__ = [
    "RedisBreakers",
    "RedisFireClaims",
    "RedisLink",
    "RedisRateLimiter",
    "RedisState",
    "SharedBudgets",
    "SharedReservation",
    "StateDown",
    "StateUnavailableError",
    "chosen_state",
]
