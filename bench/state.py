"""Benchmark 16: budgets shared on Redis (a real redis-server on loopback,
started here in a temporary directory).

Issue 16's targets:

- reserve plus settle on loopback Redis: at most 1 ms at p50 and 3 ms at
  p99 per call (`SharedBudgets.reserve`, then the settle script run in the
  same thread, timed together; the settler thread is not used, so the
  figure is the two round trips and their Python);
- the governance path with Redis adds at most 1.5 ms per call at p50: a
  chat on the deterministic provider with one USD budget, state on Redis
  against the same client with budgets in memory, interleaved;
- budget admission across 4 processes: at least 20,000 checks per second
  (each process runs reserve + release pairs in a loop for 3 s on 16
  threads, all four at once, as four workers serving concurrent requests
  would; a check is one reserve; the sum of the four rates, each timed
  over its own loop). The same with one caller per process is shown
  beside it: that rate is bound by each caller's round trip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench._common import banner, median, percentile, table
from palyra._governance import Budgets, Cost, NormalizedUsage
from palyra._state import RedisState, SharedBudgets

USAGE = NormalizedUsage(input_uncached=1200, output=800)
COST = Cost(total=Decimal("0.0156"), unpriced=False)
POLICY = {"id": "global-usd", "window": "day", "hard_limit": "1000000000"}
PROCESSES = 4
CALLERS = 16  # concurrent callers per process, as in a worker serving requests
TARGETS = {"p50_ms": 1.0, "p99_ms": 3.0, "added_ms": 1.5, "checks_per_s": 20_000}


@dataclass
class _Caller:
    agent: str | None = "bot"
    session: str | None = None
    principal: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _engine(url: str) -> SharedBudgets:
    state = RedisState(url)
    cfg = state.config
    return SharedBudgets(
        Budgets([POLICY]), state.link(), prefix=cfg.key_prefix,
        ledger=lambda: None, on_unavailable=None, local_fraction=0.1,
        margin=30.0, retry_interval=1.0,
    )  # fmt: skip


def _reserve_settle(url: str, n: int) -> list[float]:
    from palyra._state.scripts import SETTLE

    engine = _engine(url)
    party, took = _Caller(), []
    for _ in range(n):
        started = time.perf_counter()
        held = engine.reserve(party, USAGE, COST, provider="p", model="m")
        assert held is not None
        assert held.close()
        engine.settler.untrack(held.id)
        [window] = held.held
        args = [int(time.time() * 1000), held.id, 15_600_000, 0, 0, ""]
        engine.link.run(SETTLE, [window.key, "palyra:done"], args)
        took.append((time.perf_counter() - started) * 1000)
    engine.close()
    return took


def _chat_ms(client: Any, n: int) -> list[float]:
    messages = [{"role": "user", "content": "hello there"}]
    took = []
    for _ in range(n):
        started = time.perf_counter()
        client.chat(messages, max_tokens=5)
        took.append((time.perf_counter() - started) * 1000)
    return took


def _governance(url: str, rounds: int) -> tuple[float, float]:
    import palyra

    cfg = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {"id": "bot", "provider": "local", "pricing": {"input": "1", "output": "2"}}
        ],
        "budgets": [POLICY],
        "ledger": False,
    }
    memory = palyra.Palyra(cfg)
    shared = palyra.Palyra(cfg, state=RedisState(url))
    both: dict[str, list[float]] = {"memory": [], "redis": []}
    _chat_ms(memory, 200)
    _chat_ms(shared, 200)  # warm: tokenizer, window loaded, scripts cached
    for _ in range(rounds):
        both["memory"] += _chat_ms(memory, 50)
        both["redis"] += _chat_ms(shared, 50)
    memory.close()
    shared.close()
    return median(both["memory"]), median(both["redis"])


def _child(url: str, seconds: float, callers: int) -> None:
    """One process: ``callers`` threads reserving and releasing in a loop."""
    import threading

    engine = _engine(url)
    party = _Caller()
    reserve, release = engine.reserve, engine.release
    release(reserve(party, USAGE, COST, provider="p", model="m"))  # type: ignore[arg-type]
    counts = [0] * callers
    go = threading.Barrier(callers + 1)
    end = 0.0

    def loop(i: int) -> None:
        go.wait()
        n = 0
        while time.perf_counter() < end:
            held = reserve(party, USAGE, COST, provider="p", model="m")
            assert held is not None
            release(held)
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    end = started + seconds
    go.wait()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    trips = engine.batch.round_trips
    engine.close(10)
    print(json.dumps({"checks": sum(counts), "seconds": took, "trips": trips}))


def _achild(url: str, seconds: float, callers: int) -> None:
    """One process: ``callers`` asyncio tasks reserving and releasing in a
    loop, as in an async worker (one event loop)."""
    import asyncio

    async def main() -> dict[str, Any]:
        engine = _engine(url)
        party = _Caller()
        areserve, release = engine.areserve, engine.release
        release(await areserve(party, USAGE, COST, provider="p", model="m"))  # type: ignore[arg-type]
        end = time.perf_counter() + seconds

        async def loop() -> int:
            n = 0
            while time.perf_counter() < end:
                held = await areserve(party, USAGE, COST, provider="p", model="m")
                assert held is not None
                release(held)
                n += 1
            return n

        started = time.perf_counter()
        counts = await asyncio.gather(*(loop() for _ in range(callers)))
        took = time.perf_counter() - started
        trips = sum(b.round_trips for b in engine._abatches.values())
        engine.close(10)
        await engine.link.aclose()
        return {"checks": sum(counts), "seconds": took, "trips": trips}

    print(json.dumps(asyncio.run(main())))


def _throughput(
    url: str, seconds: float, callers: int, child: str = "_child"
) -> tuple[float, float]:
    """Checks per second of `PROCESSES` processes together, and checks per
    round trip to Redis (``child``: `_child` for threads, `_achild` for
    asyncio tasks)."""
    code = (
        f"import sys; from bench.state import {child};"
        f" {child}(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(seconds), str(callers)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for _ in range(PROCESSES)
    ]
    # Each child times its own loop (start-up excluded); they overlap.
    found = [json.loads(c.communicate(120)[0]) for c in children]
    rate = sum(f["checks"] / f["seconds"] for f in found)
    per_trip = sum(f["checks"] for f in found) / max(sum(f["trips"] for f in found), 1)
    return rate, per_trip


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    from tests.servers import RedisServer, find_binary

    binary = find_binary("redis-server")
    if binary is None:
        print("state: redis-server is not installed; skipped")
        return {"skipped": "redis-server not installed"}
    server = RedisServer(binary)
    server.start()
    try:
        n = 500 if quick else 5000
        banner(f"state: budgets on Redis (loopback), {n} reserve + settle pairs")
        took = _reserve_settle(server.url, n)
        p50, p99 = percentile(took, 50), percentile(took, 99)
        memory, redis = _governance(server.url, 3 if quick else 20)
        seconds = 1.0 if quick else 3.0
        serial, _ = _throughput(server.url, seconds, 1)
        checks, per_trip = _throughput(server.url, seconds, CALLERS)
        tasks, tasks_per_trip = _throughput(server.url, seconds, CALLERS, "_achild")
    finally:
        server.close()
    added = redis - memory
    rows = [
        ["reserve + settle p50 (ms)", p50, TARGETS["p50_ms"]],
        ["reserve + settle p99 (ms)", p99, TARGETS["p99_ms"]],
        ["chat, budgets in memory p50 (ms)", memory, ""],
        ["chat, budgets on Redis p50 (ms)", redis, ""],
        ["added by Redis p50 (ms)", added, TARGETS["added_ms"]],
        [f"admission checks/s, {PROCESSES} processes x 1 caller", serial, ""],
        [
            f"admission checks/s, {PROCESSES} processes x {CALLERS} callers",
            checks,
            TARGETS["checks_per_s"],
        ],
        ["  reserves per round trip", per_trip, ""],
        [
            f"admission checks/s, {PROCESSES} processes x {CALLERS} asyncio tasks",
            tasks,
            "",
        ],
        ["  reserves per round trip", tasks_per_trip, ""],
    ]
    print(table(["measure", "value", "target"], rows))
    verdicts = {
        "p50": p50 <= TARGETS["p50_ms"],
        "p99": p99 <= TARGETS["p99_ms"],
        "added": added <= TARGETS["added_ms"],
        "throughput": checks >= TARGETS["checks_per_s"],
    }
    for name, ok in verdicts.items():
        print(f"{name}: {'PASS' if ok else 'FAIL'}")
    return {
        "reserve_settle_ms": {"p50": p50, "p99": p99},
        "chat_ms": {"memory": memory, "redis": redis, "added": added},
        "checks_per_s": checks,
        "checks_per_s_one_caller": serial,
        "reserves_per_round_trip": per_trip,
        "checks_per_s_tasks": tasks,
        "reserves_per_round_trip_tasks": tasks_per_trip,
        "verdicts": {k: "PASS" if v else "FAIL" for k, v in verdicts.items()},
    }
