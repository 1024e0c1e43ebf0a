"""Retries, failover and circuit breakers, offline.

Two deterministic providers stand in for a primary and a backup upstream. The
primary is scripted to fail; palyra retries it, fails over to the backup, opens
the primary's circuit breaker, and lets one probe through once the cooldown is
over. A fake clock and sleep make the cooldown pass instantly.
"""

from __future__ import annotations

import palyra

HELLO = [{"role": "user", "content": "Hello"}]

CONFIG = {
    "providers": [
        {
            "id": "primary",
            "kind": "deterministic",
            "max_retries": 1,
            "circuit_breaker_threshold": 2,
            "circuit_breaker_cooldown": 30,
        },
        {"id": "backup", "kind": "deterministic"},
    ],
    "models": [
        {"id": "main", "provider": "primary", "fallbacks": ["spare"]},
        {"id": "spare", "provider": "backup"},
    ],
    "resilience": {"deadline": 30},
}


class FakeTime:
    """A clock that only moves when palyra sleeps or the example says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def show(reply: palyra.ChatCompletion) -> None:
    """Who served, and every attempt on the way."""
    info = reply.palyra
    assert info is not None
    print(f"served by {info.model} (asked for {info.requested_model})")
    for attempt in info.attempts:
        status = attempt.status_code or "-"
        print(f"  {attempt.model}: {attempt.outcome} {attempt.failure or ''} {status}")


def main() -> None:
    clock = FakeTime()
    with palyra.Palyra(CONFIG, sleep=clock.sleep, clock=clock) as client:
        primary = client.deterministic("primary")
        # Two failing calls: each is tried twice (max_retries = 1), then fails over.
        primary.enqueue(status=503, error="primary is down", times=4)
        show(client.chat(HELLO, model="main"))
        show(client.chat(HELLO, model="main"))

        # The breaker is open now: the primary is skipped without a request.
        show(client.chat(HELLO, model="main"))
        for health in client.health():
            print(f"{health.model}: breaker {health.state}, status {health.status}")

        clock.now += 30  # the cooldown passes; the next call is the probe
        show(client.chat(HELLO, model="main"))
        state = {h.model: h.state.value for h in client.health()}
        print(f"after the probe: {state}")


if __name__ == "__main__":
    main()
