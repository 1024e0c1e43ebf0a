"""Issue 12's smart routing: how long a decision takes, and what it adds to a call.

All on the offline deterministic provider with a 10-model registry (three
tiers, every model priced, on three providers), and a 500-token prompt (a
system prompt and a user message with a few reasoning keywords and a code
block):

- ``client.route`` timed alone, tokenizer included, two ways: the same
  prompt again and again (its texts' counts memoised, as a conversation's
  history and system prompt are), and a prompt never seen before on every
  call (every text through tiktoken's BPE). The tokenizer alone, on the same
  fresh prompts, is timed too, so the table shows what routing itself adds.
- Calls with routing ``off`` and ``enforced``, two clients of the same
  registry whose default model is routing's choice (both serve the same
  model, so the difference is routing alone), interleaved call by call in a
  new random order each round.

Targets: ``client.route`` at most 100 us at p50 for the 500-token prompt;
``enforced`` adds at most 60 us per call over ``off``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import palyra
from bench._common import banner, median, percentile, table, verdict

ROUTE_TARGET_US = 100.0
CALL_TARGET_US = 60.0
SYSTEM = (
    "You are a careful senior engineer. Answer precisely, cite the relevant"
    " lines, and keep the answer under two hundred words unless asked."
)
FILLER = [
    "the",
    "service",
    "reads",
    "the",
    "queue,",
    "batches",
    "the",
    "events",
    "by",
    "tenant,",
    "writes",
    "them",
    "to",
    "the",
    "store",
    "and",
    "acknowledges",
    "the",
    "messages",
    "once",
    "the",
    "write",
    "is",
    "durable",
]


def _prompt(seed: int) -> list[dict[str, str]]:
    """~500 tokens; a different text for each seed."""
    rng = random.Random(seed)
    body = " ".join(rng.choice(FILLER) for _ in range(400))
    user = (
        f"Ticket {seed}: analyze why this batching code is slow and compare two"
        f" fixes.\n```python\nfor e in events:\n    store.write(e)\n```\n{body}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _registry(default: str, mode: str) -> dict[str, Any]:
    tiers = ["small"] * 4 + ["medium"] * 3 + ["large"] * 3
    models = []
    for i, tier in enumerate(tiers):
        price = {"small": 0.1, "medium": 1.0, "large": 5.0}[tier] * (1 + i / 10)
        models.append(
            {
                "id": f"m{i}",
                "provider": f"p{i % 3}",
                "tier": tier,
                "context_window": 128_000,
                "max_output_tokens": 4096,
                "capabilities": {"vision": tier == "large"},
                "pricing": {"input": f"{price:.3f}", "output": f"{price * 4:.3f}"},
            }
        )
    return {
        "providers": [{"id": f"p{i}", "kind": "deterministic"} for i in range(3)],
        "models": models,
        "defaults": {"chat": default},
        "routing": {"mode": mode},
    }


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    clock = time.perf_counter
    out = []
    for _ in range(n):
        t = clock()
        fn()
        out.append((clock() - t) * 1e6)
    return out


def _route_times(n: int) -> dict[str, list[float]]:
    client = palyra.Palyra(_registry("m0", "off"), ledger=False)
    counter = client._router._counter()
    same = _prompt(0)
    for _ in range(200):
        client.route(same)
    fresh = iter(_prompt(seed) for seed in range(1, 2 * n + 2))
    fresh_again = iter(_prompt(seed) for seed in range(10**6, 10**6 + n + 1))
    return {
        "route, same prompt": _timed(lambda: client.route(same), n),
        "route, fresh prompt": _timed(lambda: client.route(next(fresh)), n),
        "tokenizer alone, fresh prompt": _timed(
            lambda: counter.estimate_chat("m0", next(fresh_again)), n
        ),
    }


def _call_times(rounds: int, per_round: int) -> dict[str, list[float]]:
    probe = palyra.Palyra(_registry("m0", "off"), ledger=False)
    prompt = _prompt(0)
    chosen = probe.route(prompt).chosen  # both sides serve this model
    sides = {
        mode: palyra.Palyra(_registry(chosen, mode), ledger=False)
        for mode in ("off", "enforced")
    }
    calls = {mode: (lambda c=c: c.chat(prompt)) for mode, c in sides.items()}
    for _ in range(300):
        for fn in calls.values():
            fn()
    reply = sides["enforced"].chat(prompt)
    assert reply.palyra is not None
    assert reply.palyra.routing is not None
    assert reply.palyra.model == chosen
    medians: dict[str, list[float]] = {mode: [] for mode in calls}
    shuffle = random.Random(12).sample
    items = list(calls.items())
    clock = time.perf_counter
    for _ in range(rounds):
        block: dict[str, list[float]] = {mode: [] for mode in calls}
        for _ in range(per_round):
            for mode, fn in shuffle(items, len(items)):
                t = clock()
                fn()
                block[mode].append((clock() - t) * 1e6)
        for mode, values in block.items():
            medians[mode].append(median(values))
    return medians


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the tables, return the JSON section."""
    n, rounds, per_round = (300, 5, 100) if quick else (3000, 25, 300)
    banner(
        "routing: client.route on a 10-model registry and a 500-token prompt,"
        f" {n} decisions per case; calls with routing off / enforced,"
        f" {rounds} rounds x {per_round} calls per side, interleaved"
    )
    timings = _route_times(n)
    rows = {
        case: {"p50_us": median(values), "p90_us": percentile(values, 90)}
        for case, values in timings.items()
    }
    print(
        table(["case", "p50 us", "p90 us"], [[k, *v.values()] for k, v in rows.items()])
    )
    own = (
        rows["route, fresh prompt"]["p50_us"]
        - rows["tokenizer alone, fresh prompt"]["p50_us"]
    )
    print(
        f"routing's own work on a fresh prompt (route - tokenizer, p50): {own:.1f} us"
    )
    same = rows["route, same prompt"]["p50_us"]
    fresh = rows["route, fresh prompt"]["p50_us"]
    calls = _call_times(rounds, per_round)
    diffs = [e - o for e, o in zip(calls["enforced"], calls["off"], strict=True)]
    added = median(diffs)
    print(
        table(
            ["side", "us/call (median of round medians)"],
            [[mode, median(values)] for mode, values in calls.items()],
        )
    )
    print(
        f"targets: route p50 <= {ROUTE_TARGET_US:.0f} us: same prompt {same:.1f} us"
        f" {verdict(same, ROUTE_TARGET_US)}, fresh prompt {fresh:.1f} us"
        f" {verdict(fresh, ROUTE_TARGET_US)}; enforced adds <= {CALL_TARGET_US:.0f}"
        f" us per call: {added:.1f} us {verdict(added, CALL_TARGET_US)}"
    )
    return {
        "route": rows,
        "routing_own_us": own,
        "calls_us": {mode: median(values) for mode, values in calls.items()},
        "enforced_added_us": added,
        "enforced_added_p10_us": percentile(diffs, 10),
        "enforced_added_p90_us": percentile(diffs, 90),
        "targets_us": {"route": ROUTE_TARGET_US, "call": CALL_TARGET_US},
        "verdicts": {
            "route_same_prompt": verdict(same, ROUTE_TARGET_US),
            "route_fresh_prompt": verdict(fresh, ROUTE_TARGET_US),
            "enforced_call": verdict(added, CALL_TARGET_US),
        },
    }
