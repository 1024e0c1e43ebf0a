"""Settlements to Redis, off the call path: one worker thread per client,
started with the first settlement, that also renews live reservations.

A call's reservation is settled (or released) here rather than in the call:
until the script runs, Redis still holds the call's worst case, which is the
cautious side, and no call, sync or async, waits on a second round trip.
Settlements queued together go in one round trip (a pipeline: each script
still atomic on its own, run in order). A settlement Redis cannot take is
kept and tried again (the settle script is idempotent per reservation id,
so a retry whose first answer was lost changes nothing); past
`MAX_PENDING` the oldest are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .link import RedisLink, ScriptError, StateDown
from .scripts import RENEW, SETTLE, UNLOAD

__all__ = ["BATCH", "MAX_PENDING", "RENEW_EVERY_S", "Live", "Settlement", "Settler"]

logger = logging.getLogger("palyra")

MAX_PENDING = 100_000
BATCH = 256
"""Settlements taken to Redis in one round trip (a pipeline), at most."""
RENEW_EVERY_S = 1.0
"""How often live reservations are renewed, and the boot token checked."""


class Live:
    """A reservation of a call still running: renewed until it ends, and
    re-asserted on a Redis that lost its data."""

    __slots__ = ("amounts", "expiry", "keys", "lease")

    def __init__(self, keys: list[str], amounts: list[int], expiry: int, lease: int):
        self.keys, self.amounts, self.expiry, self.lease = keys, amounts, expiry, lease


class Settlement:
    """One settle or release: the keys, the script's arguments, and what to
    do with the alerts it claims."""

    __slots__ = ("args", "keys", "on_alerts")

    def __init__(
        self,
        keys: list[str],
        args: list[Any],
        on_alerts: Callable[[list[bytes]], None] | None,
    ) -> None:
        self.keys, self.args, self.on_alerts = keys, args, on_alerts


class Settler:
    """The worker: settlements in order, retried while Redis is down.

    Args:
        link: The Redis.
        retry_interval: Seconds between tries while Redis is down.
        clock: Epoch milliseconds (tests pass their own).
        tick: Called once a second (whatever ``retry_interval`` is).
        done_key: The set of settled reservation ids.
        rebuildable: Whether windows can be rebuilt from a ledger that every
            process writes (else dropped settlements are lost, not rebuilt).
    """

    def __init__(
        self,
        link: RedisLink,
        retry_interval: float,
        clock: Callable[[], int],
        tick: Callable[[], None] | None = None,
        done_key: str = "palyra:done",
        rebuildable: Callable[[], bool] = lambda: True,
    ) -> None:
        self.done_key = done_key
        self._rebuildable = rebuildable
        self._link = link
        self._retry = retry_interval
        self._clock = clock
        self._queue: deque[Settlement] = deque()
        self._live: dict[str, Live] = {}
        self._tick = tick
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._taking = 0  # settlements on the wire
        self.dropped = 0
        self.settled = 0
        self.stale: set[str] = set()  # windows to rebuild: settlements dropped

    @property
    def pending(self) -> int:
        """Settlements not yet taken by Redis."""
        return len(self._queue) + self._taking

    def submit(self, settlement: Settlement) -> None:
        """Queue ``settlement`` (never blocks)."""
        with self._wake:
            if len(self._queue) >= MAX_PENDING:
                lost = self._queue.popleft()
                self.stale.update(lost.keys[:-1])  # its windows, not the done set
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    logger.error(
                        "palyra: %d budget settlements to Redis dropped (%s down);"
                        " their windows are rebuilt from the ledger once it is back",
                        self.dropped,
                        self._link.target,
                    )
            self._queue.append(settlement)
            self._start()
            self._wake.notify()

    def track(self, rid: str, live: Live) -> None:
        """Renew reservation ``rid`` while its call runs (until `untrack`)."""
        with self._wake:
            self._live[rid] = live
            self._start()

    def live(self) -> list[tuple[str, Live]]:
        """The reservations of calls still running."""
        return list(self._live.items())

    def untrack(self, rid: str) -> None:
        """The call ended: stop renewing."""
        self._live.pop(rid, None)

    def _start(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(
                target=self._work, name="palyra-state-settler", daemon=True
            )
            self._thread.start()

    def _work(self) -> None:
        next_tick = time.monotonic() + RENEW_EVERY_S
        retry_at = 0.0  # after Redis was down, settlements wait till then
        while True:
            with self._wake:
                items = self._wait(next_tick, retry_at)
                if items is None:
                    return
                self._taking = len(items)
            again = self._settle(items) if items else []
            if not again and self.stale:
                self._unload()
            if again:
                with self._wake:  # Redis is down: keep them first, retry later
                    self._queue.extendleft(reversed(again))
                    self._taking = 0
                    if self._closing:
                        return
                retry_at = time.monotonic() + self._retry
            self._taking = 0
            if time.monotonic() >= next_tick:
                # Every second, even while settlements wait out Redis being
                # down: a restarted Redis must hear from each live process
                # within its quiet period.
                self._renew()
                if self._tick is not None:
                    self._ticked(self._tick)
                next_tick = time.monotonic() + RENEW_EVERY_S

    def _wait(self, next_tick: float, retry_at: float) -> list[Settlement] | None:
        """(Under the lock.) Sleep until settlements may go or a tick is
        due; the settlements to take (maybe none), None to stop."""
        while True:
            now = time.monotonic()
            ready = bool(self._queue) and (now >= retry_at or self._closing)
            if ready or now >= next_tick:
                break
            if self._closing:
                return None
            wait = next_tick - now
            if self._queue:
                wait = min(wait, retry_at - now)
            self._wake.wait(wait)
        if not ready:
            return []
        return [self._queue.popleft() for _ in range(min(len(self._queue), BATCH))]

    @staticmethod
    def _ticked(tick: Callable[[], None]) -> None:
        try:
            tick()
        except StateDown:
            pass  # tried again next tick
        except Exception:
            logger.exception("palyra: shared state's periodic check failed")

    def _settle(self, items: list[Settlement]) -> list[Settlement]:
        """Take ``items`` to Redis in one round trip; those it could not
        take now (all of them while it is down), to try again."""
        try:
            answers = self._link.run_many([(SETTLE, i.keys, i.args) for i in items])
        except ScriptError:
            logger.exception("palyra: budget settlements failed; they are dropped")
            self.dropped += len(items)
            return []
        except StateDown:
            return items
        again = []
        for item, claimed in zip(items, answers, strict=True):
            if isinstance(claimed, ScriptError):  # a bug: never loop on it
                logger.error("palyra: a budget settlement failed: %s", claimed)
                self.dropped += 1
            elif isinstance(claimed, StateDown):  # Redis could not take it now
                again.append(item)
            else:
                self.settled += 1
                self._alert(item, claimed)
        return again

    def _unload(self) -> None:
        """Redis answers again: have the windows whose settlements were
        dropped rebuilt from the ledger (`scripts.UNLOAD`)."""
        with self._wake:
            keys, self.stale = sorted(self.stale), set()
        if not self._rebuildable():
            logger.error(
                "palyra: budget settlements to %d windows were dropped while Redis"
                " at %s was down and are lost from the budgets: without a ledger"
                " every process writes, the windows cannot be rebuilt",
                len(keys),
                self._link.target,
            )
            return
        try:
            self._link.run(UNLOAD, keys, [self._clock()])
        except StateDown:
            with self._wake:
                self.stale.update(keys)
        else:
            logger.warning(
                "palyra: %d budget windows rebuilt from the ledger: settlements"
                " to them were dropped while Redis at %s was down",
                len(keys),
                self._link.target,
            )

    def _alert(self, item: Settlement, claimed: Any) -> None:
        if claimed and item.on_alerts is not None:
            try:
                item.on_alerts(list(claimed))
            except Exception:
                logger.exception("palyra: sending budget alerts failed")

    def _renew(self) -> None:
        """Move the live reservations' expiry on, half a lease before it
        comes, and put back any Redis let go (see `scripts.RENEW`)."""
        now = self._clock()
        for rid, live in list(self._live.items()):
            if live.expiry - now > live.lease // 2:
                continue
            new_expiry = now + live.lease
            keys = [*live.keys, self.done_key]
            try:
                self._link.run(
                    RENEW, keys, [rid, new_expiry, *live.amounts], urgent=True
                )
            except ScriptError:
                logger.exception("palyra: renewing a budget reservation failed")
                continue
            except StateDown:
                return
            live.expiry = new_expiry

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to empty; whether it did."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self, timeout: float) -> None:
        """Take what is queued to Redis within ``timeout`` seconds, then stop;
        what is left is logged (the ledger keeps the truth)."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        left = len(self._queue)
        if left:
            logger.warning(
                "palyra: %d budget settlements not taken by Redis at %s before close",
                left,
                self._link.target,
            )
