"""Smart routing, offline: three models, a table of requests, every mode, and
what routing would have saved.

The deterministic provider answers in-process, so nothing leaves the machine
and no key is needed. ``mini`` is cheap with a small context window, ``core``
sits in the middle, ``vision`` is strong, dear and the only one that takes
images; ``core`` is the default model. First ``client.route`` decides for each
request without calling anything; then the same requests are sent in
``dry_run`` mode (the default model serves, the decision is recorded), and a
few in ``enforced`` mode (routing's choice serves); last, the ledger says
what routing saved, and would have saved.

Run it with ``python examples/routing.py``.
"""

from __future__ import annotations

from typing import Any

import palyra

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {
            "id": "mini",
            "provider": "local",
            "tier": "small",
            "context_window": 2048,
            "pricing": {"input": "0.15", "output": "0.60"},
        },
        {
            "id": "core",
            "provider": "local",
            "tier": "medium",
            "context_window": 32000,
            "pricing": {"input": "1", "output": "4"},
        },
        {
            "id": "vision",
            "provider": "local",
            "tier": "large",
            "context_window": 200000,
            "capabilities": {"vision": True},
            "pricing": {"input": "5", "output": "25"},
        },
    ],
    "defaults": {"chat": "core"},
    "routing": {"mode": "dry_run"},
}
PIXEL = "data:image/png;base64,iVBORw0KGgo="
FILLER = " ".join(["the report covers retention, delays and pricing"] * 60)
CODE = (
    "Refactor and debug this:\n```python\ndef total(xs):\n"
    "    return sum(x for x in xs if x)\n```\n```python\nprint(total([1]))\n```"
)
DESIGN = (
    "Analyze the trade-offs of both designs step by step and recommend one,"
    " with the reasoning. " + FILLER
)
PHOTO = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": PIXEL}},
]
# name -> (messages, options): two requests say what kind of task they are.
REQUESTS: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "a short question": ([{"role": "user", "content": "Capital of Peru?"}], {}),
    "a sentiment label": (
        [{"role": "user", "content": "Positive or negative: 'Loved it, but slow.'"}],
        {"hint": "classification"},
    ),
    "a date to extract": (
        [{"role": "user", "content": "Extract the date: 'Shipped on 3 May 2026.'"}],
        {"hint": "extraction"},
    ),
    "a design review": ([{"role": "user", "content": DESIGN}], {}),
    "a code fix": ([{"role": "user", "content": CODE}], {}),
    "a photo": ([{"role": "user", "content": PHOTO}], {}),
}


def main() -> None:
    """Decide, call in two modes, and report the savings."""
    client = palyra.Palyra(CONFIG, ledger=palyra.MemoryLedger())

    print("== client.route: decisions, no call made")
    for name, (messages, options) in REQUESTS.items():
        decision = client.route(messages, **options)
        score, tier = f"{decision.score:.2f}", decision.tier
        print(f"{name}: score {score}, tier {tier} -> {decision.chosen}")
        for candidate in decision.candidates:
            cost = candidate.estimated_cost
            price = "unpriced" if cost is None else f"~${cost:.6f}"
            print(f"  {candidate.model:7} {price:>12}  {', '.join(candidate.reasons)}")
        print(f"  {decision.explanation}")

    print("\n== dry_run: the default model serves, the choice is recorded")
    for name, (messages, options) in REQUESTS.items():
        if name == "a photo":
            continue  # core takes no images: in dry_run this call would fail
        reply = client.chat(messages, **options)
        routing = reply.palyra.routing
        print(f"{name}: served by {reply.palyra.model}, routing chose {routing.chosen}")

    print("\n== enforced: routing's choice serves")
    for name, (messages, options) in REQUESTS.items():
        reply = client.chat(messages, route="enforced", **options)
        info = reply.palyra
        print(f"{name}: served by {info.model} (asked for {info.requested_model})")

    print("\n== what routing saved (enforced) and would have saved (dry_run)")
    for mode in ("dry_run", "enforced"):
        s = client.usage.routing_savings(mode=mode)
        share = "n/a" if s.saved_share is None else f"{s.saved_share:.0%}"
        print(
            f"{mode}: {s.records} calls ({s.rescued} only routing could serve),"
            f" baseline ${s.baseline:f}, routed ${s.routed:f},"
            f" saved ${s.saved:f} ({share})"
        )


if __name__ == "__main__":
    main()
