"""Tests for palyra._core.health (circuit breakers and rolling health)."""

from __future__ import annotations

import threading

import pytest

from palyra._core.health import (
    Admission,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    HealthTracker,
    HealthWindow,
    ModelHealth,
)
from tests.helpers import ManualClock

FAKE_KEY = "sk-test1234567890abcdef"
KEY = ("openai", "gpt-4o-mini")
OTHER = ("anthropic", "claude-haiku")
THIRD = ("local", "llama")


def _open_breaker(clock: ManualClock, threshold: int = 3) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold, 30.0, clock)
    for _ in range(threshold):
        breaker.record_failure(breaker.admit())
    return breaker


def _half_open_with_probe(clock: ManualClock) -> tuple[CircuitBreaker, Admission]:
    breaker = _open_breaker(clock)
    clock.advance(30.0)
    probe = breaker.admit()
    assert probe
    assert probe.probe
    return breaker, probe


# CircuitBreaker


def test_new_breaker_is_closed_and_admits() -> None:
    """A fresh breaker admits ordinary (non-probe) calls."""
    breaker = CircuitBreaker(3, 30.0, ManualClock())
    admission = breaker.admit()
    assert admission
    assert admission.probe == 0
    assert breaker.state is BreakerState.CLOSED
    assert breaker.reopens_at() is None


def test_opens_after_threshold_consecutive_failures() -> None:
    """closed -> open only after `threshold` failures in a row."""
    clock = ManualClock()
    breaker = CircuitBreaker(3, 30.0, clock)
    breaker.record_failure(breaker.admit())
    breaker.record_failure(breaker.admit())
    breaker.record_success(breaker.admit())
    assert breaker.consecutive_failures == 0
    breaker.record_failure(breaker.admit())
    breaker.record_failure(breaker.admit())
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(breaker.admit())
    assert breaker.state is BreakerState.OPEN
    assert breaker.consecutive_failures == 3
    assert breaker.opens == 1


def test_open_breaker_refuses_until_cooldown() -> None:
    """open refuses every call and says when it half-opens."""
    clock = ManualClock()
    breaker = _open_breaker(clock)
    assert breaker.reopens_at() == clock.now + 30.0
    clock.advance(29.9)
    assert not breaker.admit()
    assert breaker.state is BreakerState.OPEN


def test_open_reads_half_open_after_cooldown() -> None:
    """open -> half_open is computed lazily from the clock."""
    clock = ManualClock()
    breaker = _open_breaker(clock)
    clock.advance(30.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.reopens_at() is None


def test_half_open_admits_exactly_one_probe() -> None:
    """A second caller during a pending probe is refused."""
    breaker, _ = _half_open_with_probe(ManualClock())
    assert not breaker.admit()
    assert not breaker.admit()
    assert breaker.state is BreakerState.HALF_OPEN


def test_probe_success_closes() -> None:
    """half_open -> closed when the probe succeeds."""
    breaker, probe = _half_open_with_probe(ManualClock())
    breaker.record_success(probe)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.admit()
    assert breaker.admit()


def test_probe_failure_reopens_for_another_cooldown() -> None:
    """half_open -> open when the probe fails; the cooldown starts again."""
    clock = ManualClock()
    breaker, probe = _half_open_with_probe(clock)
    clock.advance(5.0)
    breaker.record_failure(probe)
    assert breaker.state is BreakerState.OPEN
    assert breaker.opens == 2
    assert breaker.reopens_at() == clock.now + 30.0
    assert not breaker.admit()


def test_unreported_probe_expires() -> None:
    """A cancelled probe does not wedge the breaker: after the cooldown, the next
    caller probes."""
    clock = ManualClock()
    breaker, first = _half_open_with_probe(clock)
    assert breaker.reopens_at() == clock.now + 30.0
    clock.advance(29.0)
    assert not breaker.admit()
    clock.advance(1.0)
    second = breaker.admit()
    assert second
    assert second.probe != first.probe
    assert not breaker.admit()
    breaker.record_failure(first)  # the expired probe's late report is stale
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(second)
    assert breaker.state is BreakerState.CLOSED


def test_late_reports_from_before_opening_are_ignored() -> None:
    """Calls admitted while closed cannot close or re-open the breaker later."""
    clock = ManualClock()
    breaker = CircuitBreaker(2, 30.0, clock)
    stragglers = [breaker.admit() for _ in range(4)]
    breaker.record_failure(stragglers[0])
    breaker.record_failure(stragglers[1])
    assert breaker.state is BreakerState.OPEN
    clock.advance(30.0)
    probe = breaker.admit()
    breaker.record_success(stragglers[2])  # stale: the probe has not answered
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(probe)
    breaker.record_failure(stragglers[3])  # stale: does not count after closing
    assert breaker.consecutive_failures == 0
    assert breaker.state is BreakerState.CLOSED


def test_report_without_admission_is_the_probes() -> None:
    """record_*() with no admission resolves a pending probe."""
    breaker, _ = _half_open_with_probe(ManualClock())
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    breaker2, _ = _half_open_with_probe(ManualClock())
    breaker2.record_success()
    assert breaker2.state is BreakerState.CLOSED


def test_fifty_threads_get_exactly_one_probe() -> None:
    """Concurrent callers at half-open: one probe, 49 refusals."""
    clock = ManualClock()
    breaker = _open_breaker(clock)
    clock.advance(30.0)
    barrier = threading.Barrier(50)
    results: list[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait()
        admitted = bool(breaker.admit())
        with lock:
            results.append(admitted)

    threads = [threading.Thread(target=caller) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 50
    assert results.count(True) == 1


def test_breaker_snapshot() -> None:
    """snapshot() reports state, counters, seconds to reopen and the probe."""
    clock = ManualClock()
    breaker = _open_breaker(clock)
    clock.advance(10.0)
    assert breaker.snapshot() == BreakerSnapshot(
        state=BreakerState.OPEN,
        consecutive_failures=3,
        opens=1,
        reopens_in=20.0,
        probe_pending=False,
    )
    clock.advance(20.0)
    assert breaker.snapshot().state is BreakerState.HALF_OPEN
    breaker.admit()
    snap = breaker.snapshot()
    assert snap.probe_pending
    assert snap.reopens_in == 30.0


@pytest.mark.parametrize(
    ("threshold", "cooldown"),
    [pytest.param(0, 30.0, id="threshold"), pytest.param(3, 0.0, id="cooldown")],
)
def test_bad_settings_are_refused(threshold: int, cooldown: float) -> None:
    """A breaker needs threshold >= 1 and a positive cooldown."""
    with pytest.raises(ValueError, match="threshold must be"):
        CircuitBreaker(threshold, cooldown)


# HealthWindow


def test_window_evicts_oldest_outcomes() -> None:
    """Only the last `size` outcomes count."""
    window = HealthWindow(4, clock=ManualClock())
    for _ in range(4):
        window.record(False, 10.0, RuntimeError("boom"))
    assert window.success_rate == 0.0
    for _ in range(3):
        window.record(True, 10.0)
    assert window.success_rate == 0.75
    window.record(True, 10.0)
    assert window.success_rate == 1.0
    assert window.calls == 8


def test_window_latency_p50_counts_successes() -> None:
    """The median latency ignores failed calls."""
    window = HealthWindow(clock=ManualClock())
    assert window.latency_p50_ms is None
    for latency in (30.0, 10.0, 20.0):
        window.record(True, latency)
    window.record(False, 5000.0)
    assert window.latency_p50_ms == 20.0


def test_status_rule() -> None:
    """healthy at >= 90% or 3 recent successes; unhealthy after 3 failures."""
    window = HealthWindow(clock=ManualClock())
    assert window.status == "healthy"
    assert window.success_rate is None
    for _ in range(10):
        window.record(True, 1.0)
    window.record(False, 1.0)
    assert window.status == "healthy"  # 10/11 >= 0.9
    window.record(False, 1.0)
    assert window.status == "degraded"
    window.record(False, 1.0)
    assert window.status == "unhealthy"


def test_health_recovers_after_successes() -> None:
    """A long run of failures is forgotten after three successes."""
    window = HealthWindow(clock=ManualClock())
    for _ in range(20):
        window.record(False, 1.0, ConnectionError("refused"))
    assert window.status == "unhealthy"
    window.record(True, 1.0)
    assert window.status == "degraded"
    window.record(True, 1.0)
    window.record(True, 1.0)
    assert window.status == "healthy"


def test_old_outcomes_leave_the_window() -> None:
    """Outcomes older than max_age drop out, so idle health drifts back."""
    clock = ManualClock()
    window = HealthWindow(max_age=60.0, clock=clock)
    for _ in range(5):
        window.record(False, 1.0)
    clock.advance(61.0)
    assert window.status == "healthy"
    assert window.success_rate is None


def test_last_error_is_redacted_and_bounded() -> None:
    """The error text keeps its class name, loses the key and stays short."""
    window = HealthWindow(clock=ManualClock())
    message = f"401 from upstream: invalid key {FAKE_KEY} " + "x" * 1000
    window.record(False, 1.0, PermissionError(message))
    assert window.last_error is not None
    assert window.last_error.startswith("PermissionError: 401 from upstream")
    assert FAKE_KEY not in window.last_error
    assert len(window.last_error) < 300
    window.record(False, 1.0, TimeoutError())
    assert window.last_error == "TimeoutError"


# HealthTracker


def test_tracker_snapshot_fields() -> None:
    """snapshot() lists every key with breaker and health fields."""
    clock = ManualClock()
    tracker = HealthTracker(clock=clock)
    tracker.record(OTHER, True, 120.0, admission=tracker.admit(OTHER, 3, 30.0))
    for _ in range(2):
        admission = tracker.admit(KEY, 2, 30.0)
        error = RuntimeError(f"503 overloaded; Authorization: Bearer {FAKE_KEY}")
        tracker.record(KEY, False, 50.0, error, admission)
    clock.advance(12.5)
    first, second = tracker.snapshot()
    assert isinstance(second, ModelHealth)
    assert second.model_dump() == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "state": BreakerState.OPEN,
        "consecutive_failures": 2,
        "opens": 1,
        "reopens_in": 17.5,
        "probe_pending": False,
        "success_rate": 0.0,
        "latency_p50_ms": None,
        "last_error": "RuntimeError: 503 overloaded; Authorization: Bearer <redacted>",
        "status": "degraded",
        "calls": 2,
        "credential_problem": None,
    }
    assert (first.provider, first.state, first.status) == (
        "anthropic",
        "closed",
        "healthy",
    )
    assert (first.latency_p50_ms, first.calls, first.reopens_in) == (120.0, 1, None)
    assert FAKE_KEY not in "".join(h.model_dump_json() for h in tracker.snapshot())
    with pytest.raises(ValueError, match="frozen"):
        first.calls = 5  # type: ignore[misc]


def test_tracker_breaker_per_key() -> None:
    """One key's open breaker does not block another key."""
    tracker = HealthTracker(clock=ManualClock())
    for _ in range(3):
        tracker.record(KEY, False, 1.0, admission=tracker.admit(KEY, 3, 30.0))
    assert not tracker.admit(KEY, 3, 30.0)
    assert tracker.admit(OTHER, 3, 30.0)


def test_tracker_probe_cycle() -> None:
    """Through the tracker: open, one probe at half-open, traffic returns."""
    clock = ManualClock()
    tracker = HealthTracker(clock=clock)
    for _ in range(3):
        tracker.record(KEY, False, 1.0, admission=tracker.admit(KEY, 3, 30.0))
    clock.advance(30.0)
    probe = tracker.admit(KEY, 3, 30.0)
    assert probe
    assert not tracker.admit(KEY, 3, 30.0)
    tracker.record(KEY, True, 1.0, admission=probe)
    assert all(tracker.admit(KEY, 3, 30.0) for _ in range(5))


def test_tracker_applies_changed_settings() -> None:
    """A provider's new threshold takes effect on the next admit."""
    tracker = HealthTracker(clock=ManualClock())
    assert tracker.admit(KEY, 3, 30.0)
    assert tracker.admit(KEY, 1, 30.0)
    tracker.record(KEY, False, 1.0)
    assert not tracker.admit(KEY, 1, 30.0)


def test_order_puts_healthy_before_degraded_before_unhealthy() -> None:
    """The failover order of a key is its status's rank; unseen keys are healthy."""
    tracker = HealthTracker(clock=ManualClock())
    for _ in range(3):
        tracker.record(KEY, False, 1.0)
    tracker.record(OTHER, True, 1.0)
    tracker.record(OTHER, False, 1.0)
    unseen = ("local", "unseen")
    assert tracker.status(KEY) == "unhealthy"
    assert tracker.status(OTHER) == "degraded"
    ranked = sorted([KEY, OTHER, THIRD, unseen], key=tracker.order)
    assert ranked == [THIRD, unseen, OTHER, KEY]
    assert [tracker.order(k) for k in (unseen, OTHER, KEY)] == [0, 1, 2]


def test_earliest_reopen() -> None:
    """Seconds until the first of the given breakers admits again."""
    clock = ManualClock()
    tracker = HealthTracker(clock=clock)
    assert tracker.earliest_reopen([]) is None
    for _ in range(3):
        tracker.record(KEY, False, 1.0, admission=tracker.admit(KEY, 3, 30.0))
    clock.advance(10.0)
    for _ in range(3):
        tracker.record(OTHER, False, 1.0, admission=tracker.admit(OTHER, 3, 60.0))
    assert tracker.earliest_reopen([KEY, OTHER]) == 20.0
    assert tracker.earliest_reopen([OTHER]) == 60.0
    assert tracker.earliest_reopen([OTHER, THIRD]) == 0.0
    clock.advance(20.0)
    assert tracker.earliest_reopen([KEY, OTHER]) == 0.0


def test_disabled_tracker_keeps_no_books() -> None:
    """enabled=False: admit always allows and record does nothing."""
    tracker = HealthTracker(clock=ManualClock(), enabled=False)
    for _ in range(10):
        assert tracker.admit(KEY, 1, 30.0)
        tracker.record(KEY, False, 1.0, RuntimeError("down"))
    assert tracker.admit(KEY, 1, 30.0)
    assert tracker.snapshot() == []
    assert tracker.status(KEY) == "healthy"
    assert tracker.order(KEY) == tracker.order(OTHER) == 0
