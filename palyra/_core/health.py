"""Circuit breakers and rolling health per provider and model.

Pure bookkeeping: no I/O, no sleeping. Time comes from an injected clock
(monotonic seconds); each object guards its state with one `threading.Lock`, as
the sync driver calls from threads and the async one from tasks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from .._utils import excerpt

__all__ = [
    "Admission",
    "BreakerBus",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "HealthTracker",
    "HealthWindow",
    "ModelHealth",
]

Clock = Callable[[], float]
HealthKey = tuple[str, str]
HealthStatus = Literal["healthy", "degraded", "unhealthy"]
_DEFAULT_SETTINGS = (3, 30.0)  # ProviderConfig's, for a key first seen by record
_STATUS_ORDER = {"healthy": 0, "degraded": 1, "unhealthy": 2}
# Window entries: (clock time, ok, latency_ms, error class name, redacted excerpt).
_Sample = tuple[float, bool, float, str | None, str | None]
_Entry = tuple["CircuitBreaker", "HealthWindow"]
_UNSEEN: tuple[bool, HealthStatus, float | None] = (False, "healthy", None)


class BreakerState(StrEnum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission:
    """A breaker's answer to `CircuitBreaker.admit`: truthy when the call may go.

    Hand it back with the call's report: the breaker can then tell the probe's
    report from a late one of a call admitted before it last opened.
    """

    __slots__ = ("allowed", "probe")

    def __init__(self, allowed: bool, probe: int = 0) -> None:
        self.allowed = allowed
        self.probe = probe  # serial of the half-open probe; 0 for ordinary calls

    def __bool__(self) -> bool:
        return self.allowed


_REFUSED = Admission(False)
_UNTRACKED = Admission(True)  # what a disabled tracker hands out


class BreakerSnapshot(BaseModel):
    """One circuit breaker at one moment.

    Attributes:
        state: ``closed``, ``open`` or ``half_open``.
        consecutive_failures: Failed calls counted since the last success.
        opens: Times the breaker opened (re-opens after a failed probe too).
        reopens_in: Seconds from now until it admits a call again (a probe);
            None when it admits calls now.
        probe_pending: Half-open with its one probe still out.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    state: BreakerState
    consecutive_failures: int
    opens: int
    reopens_in: float | None
    probe_pending: bool


class ModelHealth(BreakerSnapshot):
    """Breaker and recent health of one provider's model.

    Attributes:
        success_rate: Share of successes in the window (the last 20
            outcomes of the last 5 minutes); None before any outcome.
        latency_p50_ms: Median latency of the window's successful calls.
        last_error: ``"ClassName: excerpt"`` of the window's latest failure,
            redacted and bounded.
        status: ``healthy``, ``degraded`` or ``unhealthy``, from the window.
        calls: Every outcome recorded since the client was built, also those
            that have left the window (a lifetime counter, not the window's).
        credential_problem: ``"auth_invalid"`` or ``"permission"`` after the
            provider refused its credential; cleared by its next success.
    """

    provider: str
    model: str
    success_rate: float | None
    latency_p50_ms: float | None
    last_error: str | None
    status: HealthStatus
    calls: int
    credential_problem: str | None = None


class CircuitBreaker:
    """Closed -> open -> half-open (one probe) -> closed, driven by a clock.

    After ``threshold`` (>= 1) consecutive failed calls the breaker opens for
    ``cooldown`` (> 0, else ValueError) seconds, then half-opens: `admit` lets
    exactly one probe through and refuses everyone else. The probe's success
    closes the breaker, its failure re-opens it; a probe that never reports
    (its caller was cancelled) expires after ``cooldown`` and the next caller
    probes instead. Only the latest probe's report moves a breaker out of
    half-open: a report carrying the `Admission` of a call admitted before the
    breaker last opened, or of an older probe, is stale and ignored. A report
    without an admission always counts; at half-open it is the probe's.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Clock = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.configure(threshold, cooldown)
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0  # failed calls counted since the last success
        self.opens = 0  # times it opened, re-opens after a failed probe included
        # OPEN: when it half-opens. HALF_OPEN: when the latest probe expires.
        self._until = 0.0
        self._probe = 0  # serial of the latest probe
        # Handed to every call admitted while closed; replaced when the breaker
        # opens, which makes the reports of calls admitted before that stale.
        self._current = Admission(True)

    def configure(self, threshold: int, cooldown: float) -> None:
        """Change the threshold and cooldown (a reloaded provider config)."""
        if threshold < 1 or not cooldown > 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")
        with self._lock:
            self.settings = (threshold, cooldown)
            self._threshold, self._cooldown = threshold, float(cooldown)

    def admit(self) -> Admission:
        """Whether a call may go now; at half-open, only the first caller probes."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return self._current
            now = self._clock()
            if now < self._until:
                return _REFUSED
            # The cooldown is over, or the pending probe expired: this call probes.
            self._state = BreakerState.HALF_OPEN
            self._probe += 1
            self._until = now + self._cooldown
            return Admission(True, self._probe)

    def record_success(self, admission: Admission | None = None) -> None:
        """Report a successful call; the probe's success closes the breaker."""
        with self._lock:
            if self._counts(admission):
                self.consecutive_failures = 0
                if self._state is BreakerState.HALF_OPEN:
                    self._state = BreakerState.CLOSED

    def record_failure(self, admission: Admission | None = None) -> None:
        """Report a failed call; may open (or, for the probe, re-open) the breaker."""
        with self._lock:
            if not self._counts(admission):
                return
            self.consecutive_failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED
                and self.consecutive_failures >= self._threshold
            ):
                self._state = BreakerState.OPEN
                self._until = self._clock() + self._cooldown
                self.opens += 1
                self._current = Admission(True)

    def _counts(self, admission: Admission | None) -> bool:  # lock held
        if admission is None or admission is self._current:
            return True
        return self._state is BreakerState.HALF_OPEN and admission.probe == self._probe

    @property
    def state(self) -> BreakerState:
        """The state now; an open breaker whose cooldown is over reads half-open."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() >= self._until:
                return BreakerState.HALF_OPEN
            return self._state

    def reopens_at(self) -> float | None:
        """Clock time when the breaker will admit a call again; None if it does now.

        Open: when it half-opens. Half-open with a probe out: when that expires.
        """
        with self._lock:
            if self._state is BreakerState.CLOSED or self._clock() >= self._until:
                return None
            return self._until

    def snapshot(self) -> BreakerSnapshot:
        """The breaker's state and counters now."""
        with self._lock:
            state, waiting = self._state, self._until - self._clock()
            blocked = state is not BreakerState.CLOSED and waiting > 0
            pending = state is BreakerState.HALF_OPEN and blocked
            if state is BreakerState.OPEN and not blocked:
                state = BreakerState.HALF_OPEN
            return BreakerSnapshot(
                state=state,
                consecutive_failures=self.consecutive_failures,
                opens=self.opens,
                reopens_in=waiting if blocked else None,
                probe_pending=pending,
            )


class HealthWindow:
    """The last ``size`` outcomes of one model, and a status derived from them.

    Status, by the first rule that holds for the outcomes in the window:
    **unhealthy** when the last 3 all failed; **healthy** when there are none,
    the success rate is >= 0.9 or the last 3 succeeded; else **degraded**.
    Three successes in a row make a model healthy again, and outcomes older
    than ``max_age`` seconds leave the window, so an idle model drifts back to
    healthy and gets traffic (its breaker still guards it): never sticky.
    """

    STREAK: ClassVar[int] = 3
    HEALTHY_RATE: ClassVar[float] = 0.9

    def __init__(
        self,
        size: int = 20,
        *,
        max_age: float | None = 300.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._lock = threading.Lock()
        self._clock = clock
        self._max_age = max_age
        self._samples: deque[_Sample] = deque(maxlen=size)
        self._ok = 0  # successes among _samples
        self.calls = 0  # every outcome recorded, also those that left the window
        self.last_error: str | None = None  # "Class: excerpt", redacted, bounded
        self._redacted: tuple[int, str | None] = (-1, None)  # (hash(raw), excerpt)

    def record(
        self, ok: bool, latency_ms: float, error: BaseException | None = None
    ) -> None:
        """Add one outcome; an error is kept only as a redacted, bounded excerpt."""
        name = text = None
        if error is not None:
            # A failing upstream repeats itself: redact each distinct message once.
            raw, (seen, text) = str(error), self._redacted
            if hash(raw) != seen:
                text = excerpt(raw)
                self._redacted = (hash(raw), text)
            name = type(error).__name__
        with self._lock:
            samples = self._samples
            if len(samples) == samples.maxlen and samples[0][1]:
                self._ok -= 1
            samples.append((self._clock(), ok, latency_ms, name, text))
            self._ok += ok
            self.calls += 1
            if name is not None and not ok:
                self.last_error = name if text == "<empty>" else f"{name}: {text}"

    def _expire(self) -> deque[_Sample]:  # lock held
        samples = self._samples
        if self._max_age is not None:
            oldest = self._clock() - self._max_age
            while samples and samples[0][0] < oldest:
                self._ok -= samples.popleft()[1]
        return samples

    @property
    def success_rate(self) -> float | None:
        """Share of successful outcomes in the window; None when it is empty."""
        with self._lock:
            n = len(self._expire())
            return self._ok / n if n else None

    @property
    def latency_p50_ms(self) -> float | None:
        """Median (nearest rank) latency of the successful calls in the window."""
        with self._lock:
            values = sorted(s[2] for s in self._expire() if s[1])
        return values[(len(values) - 1) // 2] if values else None

    @property
    def status(self) -> HealthStatus:
        """``healthy``, ``degraded`` or ``unhealthy`` (rule in the class docstring)."""
        with self._lock:
            samples = self._expire()
            n, streak = len(samples), self.STREAK
            if n >= streak:
                recent = [samples[-i][1] for i in range(1, streak + 1)]
                if not any(recent):
                    return "unhealthy"
                if all(recent):
                    return "healthy"
            return "healthy" if self._ok >= self.HEALTHY_RATE * n else "degraded"


class BreakerBus(Protocol):
    """Carries breaker transitions between processes: ``breaker`` makes one
    that reports to it (`palyra._core.sharing`); ``watch`` applies other
    processes' transitions, and ``first_read`` returns once it has read
    them a first time (bounded by the bus's timeouts); ``opened`` and
    ``closed`` never block; ``probe`` says whether this process takes the
    one probe (True when it cannot tell). ``palyra._state`` has the bus."""

    def breaker(
        self, key: HealthKey, threshold: int, cooldown: float, clock: Clock
    ) -> CircuitBreaker: ...
    def watch(self, tracker: HealthTracker) -> None: ...
    def first_read(self) -> None: ...
    def opened(self, key: HealthKey, seconds: float) -> None: ...
    def closed(self, key: HealthKey) -> None: ...
    def probe(self, key: HealthKey, seconds: float) -> bool: ...


class HealthTracker:
    """A breaker and a health window per ``(provider_id, model_id)``, made on
    first use with the provider's breaker settings (re-applied if they change).

    Args:
        window_size: Outcomes kept per model.
        max_age: Seconds after which an outcome leaves the window (None: never).
        clock: Monotonic seconds.
        enabled: False makes `admit` always allow and the rest no-ops (a key is
            then never seen): ``[resilience] circuit_breakers = false``.
        bus: Shares breaker transitions with other processes
            (`palyra._core.sharing`); None keeps them in this one.
    """

    def __init__(
        self,
        *,
        window_size: int = 20,
        max_age: float | None = 300.0,
        clock: Clock = time.monotonic,
        enabled: bool = True,
        bus: BreakerBus | None = None,
    ) -> None:
        self.enabled = enabled
        self.bus = bus
        self._clock = clock
        self._window = (window_size, max_age)
        self._entries: dict[HealthKey, _Entry] = {}
        self._credentials: dict[str, str] = {}  # provider id -> failure class
        self._problems = MappingProxyType(self._credentials)
        self._lock = threading.Lock()  # guards adding entries

    def _entry(self, key: HealthKey, threshold: int, cooldown: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            size, max_age = self._window
            new = (
                self._breaker(key, threshold, cooldown),
                HealthWindow(size, max_age=max_age, clock=self._clock),
            )
            with self._lock:
                first = not self._entries
                entry = self._entries.setdefault(key, new)
            if first and self.bus is not None:
                self.bus.watch(self)
        return entry

    def _breaker(
        self, key: HealthKey, threshold: int, cooldown: float
    ) -> CircuitBreaker:
        if self.bus is None:
            return CircuitBreaker(threshold, cooldown, self._clock)
        return self.bus.breaker(key, threshold, cooldown, self._clock)

    def follow(self, key: HealthKey) -> CircuitBreaker:
        """The key's breaker, made (default settings) if unseen: another
        process's open applies before this one's first call."""
        return self._entry(key, *_DEFAULT_SETTINGS)[0]

    def breaker(self, key: HealthKey) -> CircuitBreaker | None:
        """The key's breaker, if the key has been seen."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def admit(self, key: HealthKey, threshold: int, cooldown: float) -> Admission:
        """Ask the key's breaker whether a call may go now (truthy if so)."""
        if not self.enabled:
            return _UNTRACKED
        breaker = self._entry(key, threshold, cooldown)[0]
        if breaker.settings != (threshold, cooldown):
            breaker.configure(threshold, cooldown)
        return breaker.admit()

    def record(
        self,
        key: HealthKey,
        ok: bool,
        latency_ms: float,
        error: BaseException | None = None,
        admission: Admission | None = None,
    ) -> None:
        """Report a call's outcome, with the `Admission` that `admit` returned."""
        if not self.enabled:
            return
        breaker, window = self._entry(key, *_DEFAULT_SETTINGS)
        if ok:
            breaker.record_success(admission)
            if self._credentials:
                self._credentials.pop(key[0], None)
        else:
            breaker.record_failure(admission)
        window.record(ok, latency_ms, error)

    def mark_credential(self, provider: str, problem: str) -> None:
        """Note that ``provider`` refused its credential (``auth_invalid`` or
        ``permission``) until one of its calls succeeds."""
        if self.enabled:
            self._credentials[provider] = problem

    def credential_problem(self, provider: str) -> str | None:
        """The provider's marked credential problem, if any."""
        return self._credentials.get(provider)

    def credential_problems(self) -> Mapping[str, str]:
        """Every marked credential problem, by provider id (a live read-only
        view: routing reads it once per decision, for every model)."""
        return self._problems

    def status(self, key: HealthKey) -> HealthStatus:
        """The key's health status; a key never seen is healthy."""
        entry = self._entries.get(key)
        return "healthy" if entry is None else entry[1].status

    def observed(self, key: HealthKey) -> tuple[bool, HealthStatus, float | None]:
        """What routing reads of a key, changing nothing: whether its breaker
        refuses calls now (open, or half-open with its probe out), its status
        and its median latency. A key never seen: ``(False, "healthy", None)``."""
        entry = self._entries.get(key)
        if entry is None:
            return _UNSEEN
        breaker, window = entry
        refusing = breaker.reopens_at() is not None
        return refusing, window.status, window.latency_p50_ms

    def order(self, key: HealthKey) -> int:
        """Where the key's status puts it in failover order: 0 healthy, 1
        degraded, 2 unhealthy."""
        return _STATUS_ORDER[self.status(key)]

    def earliest_reopen(self, keys: Iterable[HealthKey]) -> float | None:
        """Seconds until one of these keys admits a call (0.0: now; None: no keys)."""
        waits = []
        for key in keys:
            entry = self._entries.get(key)
            until = None if entry is None else entry[0].reopens_at()
            waits.append(0.0 if until is None else max(0.0, until - self._clock()))
        return min(waits, default=None)

    def snapshot(self) -> list[ModelHealth]:
        """Breaker and health of every key seen, sorted by provider and model."""
        with self._lock:
            items = sorted(self._entries.items(), key=lambda item: item[0])
        return [
            ModelHealth(
                provider=provider,
                model=model,
                **dict(breaker.snapshot()),
                success_rate=window.success_rate,
                latency_p50_ms=window.latency_p50_ms,
                last_error=window.last_error,
                status=window.status,
                calls=window.calls,
                credential_problem=self._credentials.get(provider),
            )
            for (provider, model), (breaker, window) in items
        ]
