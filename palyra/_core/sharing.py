"""Breakers shared by several processes: the seam and the breaker that uses it.

Pure logic, like ``health``: the `BreakerBus` given to `HealthTracker` (by
``palyra._state``, over Redis) carries transitions between processes. A
`SharedBreaker` tells the bus when it opens and when its probe closes it,
takes opens and closes that other processes reported, and at half-open
asks the bus for the one probe of all processes before letting its own
caller probe. Health windows stay local: only transitions are shared.
"""

from __future__ import annotations

from .health import _REFUSED, Admission, BreakerBus, BreakerState, CircuitBreaker, Clock

__all__ = ["PROBE_RETRY_S", "SharedBreaker"]

PROBE_RETRY_S = 1.0
"""Seconds a breaker waits to ask again after another process took the probe."""


class SharedBreaker(CircuitBreaker):
    """A `CircuitBreaker` whose transitions are shared through a bus."""

    def __init__(
        self,
        key: tuple[str, str],
        bus: BreakerBus,
        threshold: int,
        cooldown: float,
        clock: Clock,
    ) -> None:
        super().__init__(threshold, cooldown, clock)
        self._key, self._bus = key, bus

    def admit(self) -> Admission:
        """As `CircuitBreaker.admit`; at half-open the probe must also be
        this process's (one across all of them). The client's first calls
        wait for the bus's first read: a breaker open elsewhere refuses them."""
        self._bus.first_read()
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return self._current
            now = self._clock()
            if now < self._until:
                return _REFUSED
            if not self._bus.probe(self._key, self._cooldown):
                self._state = BreakerState.OPEN  # another process probes
                self._until = now + min(PROBE_RETRY_S, self._cooldown)
                return _REFUSED
            self._state = BreakerState.HALF_OPEN
            self._probe += 1
            self._until = now + self._cooldown
            return Admission(True, self._probe)

    def record_success(self, admission: Admission | None = None) -> None:
        """As `CircuitBreaker.record_success`; a close is told to the bus."""
        before = self._state
        super().record_success(admission)
        if before is BreakerState.HALF_OPEN and self._state is BreakerState.CLOSED:
            self._bus.closed(self._key)

    def record_failure(self, admission: Admission | None = None) -> None:
        """As `CircuitBreaker.record_failure`; an open is told to the bus."""
        opens = self.opens
        super().record_failure(admission)
        if self.opens != opens:
            self._bus.opened(self._key, self._cooldown)

    def remote_open(self, seconds: float) -> None:
        """Another process opened this breaker: open it here until then."""
        with self._lock:
            until = self._clock() + seconds
            if self._state is BreakerState.CLOSED or self._until < until:
                self._state = BreakerState.OPEN
                self._until = until
                self._current = Admission(True)  # earlier calls' reports: stale

    def remote_close(self) -> None:
        """Another process's probe closed this breaker: close it here."""
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                self._state = BreakerState.CLOSED
                self.consecutive_failures = 0
