"""Benchmark 5: what breaker and health bookkeeping add to a call.

The same `Palyra.chat` over `httpx.MockTransport` (no socket, so the noise is
small), once with breakers on (the default) and once with ``[resilience]
circuit_breakers = false``, interleaved block by block. Target: at most 10
microseconds per call.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

import palyra
from bench._common import banner, median, percentile, table, verdict

TARGET_US = 10.0
REPLY = {
    "id": "c",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
}


def _client(enabled: bool) -> palyra.Palyra:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=REPLY)

    config = {
        "providers": [{"id": "up", "kind": "openai", "auth_header": "none"}],
        "models": [{"id": "m", "provider": "up"}],
        "resilience": {"circuit_breakers": enabled},
    }
    return palyra.Palyra(config, transport=httpx.MockTransport(handler))


def _direct_us() -> float:
    """The tracker's own cost per call (admit + record), without the call."""
    from palyra._core import HealthTracker

    tracker, key = HealthTracker(), ("up", "m")

    def one() -> None:
        admission = tracker.admit(key, 3, 30.0)
        tracker.record(key, True, 1.0, admission=admission)

    samples = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(20_000):
            one()
        samples.append((time.perf_counter() - started) / 20_000 * 1e6)
    return min(samples)


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    blocks, calls = (7, 200) if quick else (25, 1000)
    banner(f"bookkeeping: health on vs off, {blocks} blocks x {calls} calls per side")
    clients = {"on": _client(True), "off": _client(False)}
    messages = [{"role": "user", "content": "hi"}]
    for client in clients.values():
        for _ in range(200):
            client.chat(messages)
    per_call: dict[str, list[float]] = {"on": [], "off": []}
    diffs = []
    for i in range(blocks):
        order = ["on", "off"] if i % 2 == 0 else ["off", "on"]
        block: dict[str, float] = {}
        for side in order:
            started = time.perf_counter()
            for _ in range(calls):
                clients[side].chat(messages)
            block[side] = (time.perf_counter() - started) / calls * 1e6
            per_call[side].append(block[side])
        diffs.append(block["on"] - block["off"])
    for client in clients.values():
        client.close()
    added = median(diffs)
    direct = _direct_us()
    print(
        table(
            ["side", "us/call median"],
            [[side, median(values)] for side, values in per_call.items()],
        )
    )
    print(
        f"bookkeeping adds {added:+.2f} us per call end to end"
        f" (p90 {percentile(diffs, 90):+.2f}); admit + record alone {direct:.2f} us;"
        f" target <= {TARGET_US:g} us: {verdict(added, TARGET_US)}"
    )
    return {
        "us_per_call": {side: median(v) for side, v in per_call.items()},
        "added_us_median": added,
        "added_us_p90": percentile(diffs, 90),
        "admit_record_us": direct,
        "target_us": TARGET_US,
    }
