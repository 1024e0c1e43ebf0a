"""A Redis that lost its data (restarted without persistence) forgets the
reservations of calls in flight; each process puts its own back.

Every reserve carries the boot token its process last saw. A Redis without
one has lost its data (or is new): the first process that had seen another
token sets a new one and a quiet period (`QUIET_MS`) in which nobody is
admitted; every process that finds the token changed, on its next reserve
or its settler's next tick (once a second), re-asserts the reservations of
its calls still running. After the quiet period, windows are rebuilt from
the ledger and counting goes on with every live reservation held again.

What it cannot cover: a process that starts after the loss and is the very
first to reach Redis takes the missing token for a new Redis (nobody to
warn it), and a dead process's calls are not re-asserted (they spend
nothing more).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from .parts import Need, text
from .scripts import BOOT, REASSERT
from .settler import RENEW_EVERY_S

if TYPE_CHECKING:
    from .budgets import SharedBudgets

__all__ = ["QUIET_MS", "quiet_ms", "reasserting", "tick"]

QUIET_MS = int((2 * RENEW_EVERY_S + 0.5) * 1000)
"""Milliseconds nobody is admitted after a Redis lost its data: two ticks of
every live process's settler, and a margin (see `quiet_ms`)."""


def quiet_ms(round_trip_bound: float) -> int:
    """The quiet period for a link whose round trip can take
    ``round_trip_bound`` seconds: the ticks come once a second whatever
    ``retry_interval`` is, and each may take that long."""
    return QUIET_MS + int(round_trip_bound * 1000)


def reasserting(engine: SharedBudgets) -> Generator[Need, object, None]:
    """The scripts that put ``engine``'s live reservations back, one by one
    (a generator: the reserving logic yields from it and is sent answers)."""
    done = engine.settler.done_key
    for rid, live in engine.settler.live():
        engine.reasserted += 1
        keys = [*live.keys, done]
        yield Need(REASSERT, keys, [rid, live.expiry, *live.amounts])


def tick(engine: SharedBudgets) -> None:
    """If Redis' boot token changed, put the live reservations back (from
    the settler's thread, once a second).

    Raises:
        StateDown: Redis cannot be reached (tried again next tick).
    """
    if not engine.boot or not engine.settler.live():
        return
    found = engine.link.run(BOOT, engine.boot_keys()[:1], [], urgent=True)
    if found is not None and text(found) == engine.boot:
        return
    for need in reasserting(engine):
        assert need.script is not None
        engine.link.run(need.script, need.keys, need.args, urgent=True)
    if found is not None:
        engine.boot = text(found)
