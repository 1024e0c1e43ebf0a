"""Issue 17's call events: what ``on_event`` costs a call.

Two clients on the offline deterministic provider, no ledger: one without
``on_event``, one with a callback that does nothing (so that what is
measured is palyra's noting and queueing, not the callback); chats and
streams read to their end. The dispatcher thread delivers meanwhile, as in
an app. Two figures, in CPU time (``bench._common``): on the call's path,
the calling thread's time per call, interleaved call by call; all in, the
process's time for blocks of calls, flushed, per call (the events' thread
included).

The target: the no-op callback adds at most 5 us per call at the median,
on the call's path.

Then ``/metrics``: a client with 100 models, each called (so each has its
series and a breaker), and two budgets; the page made 50 times (what a
scrape does, budgets and breakers read), against a target of 5 ms.
"""

from __future__ import annotations

from typing import Any

import palyra
from bench._common import (
    banner,
    cpu_all_in,
    cpu_on_path,
    median,
    percentile,
    table,
    verdict,
)

TARGET_US = 5.0
TARGET_METRICS_MS = 5.0
MESSAGES = [{"role": "user", "content": "Name three primary colours."}]


def _nothing(event: palyra.CallEvent) -> None:
    return None


def _stream(client: palyra.Palyra) -> None:
    with client.stream(MESSAGES) as stream:
        for _ in stream:
            pass


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    rounds, per_round, warmup = (6, 100, 200) if quick else (30, 300, 500)
    blocks, size = (4, 200) if quick else (12, 500)
    banner(
        "events: a call without on_event against one with a no-op callback,"
        f" deterministic provider, no ledger, {rounds} rounds x {per_round}"
        f" calls per side, interleaved, in CPU time; then {blocks} blocks x"
        f" {size} calls per side, flushed"
    )
    plain = palyra.Palyra(ledger=False)
    observed = palyra.Palyra(ledger=False, on_event=_nothing)
    found: dict[str, Any] = {}
    rows = []
    try:
        for what, call in (("chat", lambda c: c.chat(MESSAGES)), ("stream", _stream)):
            calls = {
                "none": lambda f=call: f(plain),
                "no-op": lambda f=call: f(observed),
            }
            timed = cpu_on_path(calls, rounds, per_round, warmup)
            diffs = [s - b for s, b in zip(timed["no-op"], timed["none"], strict=True)]
            added = median(diffs)
            clients = {"none": plain, "no-op": observed}
            whole = cpu_all_in(calls, clients, blocks, size)
            found[what] = {
                "none_us": median(timed["none"]),
                "no_op_us": median(timed["no-op"]),
                "added_us_median": added,
                "added_us_p10": percentile(diffs, 10),
                "added_us_p90": percentile(diffs, 90),
                "all_in_added_us": whole["no-op"] - whole["none"],
                "verdict": verdict(added, TARGET_US),
            }
            rows.append(
                [what, found[what]["none_us"], found[what]["no_op_us"], added,
                 found[what]["added_us_p10"], found[what]["added_us_p90"],
                 TARGET_US, found[what]["verdict"], found[what]["all_in_added_us"]]
            )  # fmt: skip
        observed.flush(10)
        stats = observed.observability.stats()
        found["delivered"] = stats.delivered
        found["dropped"] = stats.dropped
    finally:
        plain.close()
        observed.close()
    print(
        table(
            [
                "call",
                "none us",
                "no-op us",
                "added",
                "p10",
                "p90",
                "target",
                "",
                "all in added",
            ],
            rows,
        )
    )
    print(f"events delivered {found['delivered']}, dropped {found['dropped']}")
    found["metrics"] = _metrics_page(quick)
    return found


def _metrics_page(quick: bool) -> dict[str, Any]:
    import time

    models = [
        {
            "id": f"m{i:03d}",
            "provider": "local",
            "pricing": {"input": "1", "output": "2"},
        }
        for i in range(100)
    ]
    config = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": models,
        "budgets": [
            {"id": "daily", "metric": "usd", "window": "day", "hard_limit": "100"},
            {"id": "tokens", "metric": "tokens", "window": "day", "hard_limit": 10**9},
        ],
    }
    client = palyra.Palyra(config, ledger=palyra.MemoryLedger())
    try:
        metrics = client.observability.metrics()
        for model in models:
            client.chat(MESSAGES, model=model["id"])
        client.flush(10)
        took = []
        for _ in range(10 if quick else 50):
            started = time.perf_counter()
            page = metrics.render()
            took.append((time.perf_counter() - started) * 1000)
    finally:
        client.close()
    ms = median(took)
    print(
        table(
            ["measure", "value", "target", ""],
            [
                ["/metrics, 100 models (ms)", ms, TARGET_METRICS_MS,
                 verdict(ms, TARGET_METRICS_MS)],
                ["  page size (bytes)", len(page), "", ""],
            ],
        )
    )  # fmt: skip
    return {"ms": ms, "bytes": len(page), "verdict": verdict(ms, TARGET_METRICS_MS)}
