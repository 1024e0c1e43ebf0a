"""Call events for your own tooling: a callback handed each call's `start`,
`first_token`, `end`, `error` and `cancelled`, off the call's path.

Offline (the deterministic provider), no key. A chat, a stream read to its
end, a stream closed early, and a call a budget refuses: each call's events
in order, one id per call, with usage, cost and latency at its end; then how
delivery went. Run it with ``python examples/call_events.py``.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import palyra

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {"id": "bot", "provider": "local", "pricing": {"input": "1", "output": "2"}}
    ],
    # A cap the third call's worst case does not fit: refused, nothing sent.
    "budgets": [
        {"id": "tiny", "metric": "tokens", "scope": "agent", "value": "greedy",
         "hard_limit": 10}
    ],
}  # fmt: skip
ASK = [{"role": "user", "content": "Tell me about the weather"}]


def main() -> None:
    calls: dict[str, list[palyra.CallEvent]] = defaultdict(list)

    def keep(event: palyra.CallEvent) -> None:  # runs on palyra's own thread
        calls[event.call_id].append(event)

    client = palyra.Palyra(CONFIG, on_event=keep, ledger=False)
    client.chat(ASK, agent="docs")
    with client.stream(ASK, agent="docs") as stream:
        for _ in stream:
            pass
    with client.stream(ASK, agent="docs") as stream:
        next(iter(stream))  # leave after the first chunk
    with contextlib.suppress(palyra.BudgetExceededError):
        client.chat(ASK, agent="greedy")
    client.flush(5)  # the callbacks have every event now
    for events in calls.values():
        last = events[-1]
        kinds = " -> ".join(e.kind for e in events)
        what = last.error_class or (
            f"{last.usage.total} tokens, ${last.cost.total}, {last.latency_ms:.1f} ms"
            if last.usage and last.cost and last.cost.total is not None
            else ""
        )
        print(f"{last.agent}: {kinds} ({what})")
    stats = client.observability.stats()
    print(f"delivered {stats.delivered} of {stats.emitted}, dropped {stats.dropped}")
    client.close()


if __name__ == "__main__":
    main()
