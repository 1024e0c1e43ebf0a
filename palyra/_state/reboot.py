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

__all__ = ["QUIET_MS", "reasserting", "tick"]

QUIET_MS = int((2 * RENEW_EVERY_S + 0.5) * 1000)
"""Milliseconds nobody is admitted after a Redis lost its data: two ticks of
every live process's settler, and a margin."""


def reasserting(engine: SharedBudgets) -> Generator[Need, object, None]:
    """The scripts that put ``engine``'s live reservations back, one by one
    (a generator: the reserving logic yields from it and is sent answers)."""
    for rid, live in engine.settler.live():
        engine.reasserted += 1
        yield Need(REASSERT, live.keys, [rid, live.expiry, *live.amounts])


def tick(engine: SharedBudgets) -> None:
    """If Redis' boot token changed, put the live reservations back (from
    the settler's thread, once a second).

    Raises:
        StateDown: Redis cannot be reached (tried again next tick).
    """
    if not engine.boot or not engine.settler.live():
        return
    found = engine.link.run(BOOT, engine.boot_keys()[:1], [])
    if found is not None and text(found) == engine.boot:
        return
    for need in reasserting(engine):
        assert need.script is not None
        engine.link.run(need.script, need.keys, need.args)
    if found is not None:
        engine.boot = text(found)
