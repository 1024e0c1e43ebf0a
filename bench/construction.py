"""Benchmark 6: building a client, and binding a caller to it.

- ``Palyra(config)`` from a 20-provider dict (validation included) and from a
  ready `PalyraConfig`, warm (schemas built, modules loaded), median of many
  builds; target at most 2 ms. Building does no I/O: the resolver given here
  would record a lookup, and the figures say how many there were (none).
- ``client.bind(agent=..., tags=...)``: microseconds per view, and what a call
  through a bound view costs more than one through the client itself (same
  deterministic upstream, interleaved blocks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import palyra
from bench._common import banner, median, percentile, table, verdict

TARGET_MS = 2.0
PROVIDERS = 20


def twenty_providers() -> dict[str, Any]:
    """20 providers with explicit base URLs (OpenAI-compatible and Anthropic),
    two models each, as an app's config file would give them."""
    providers = [
        {
            "id": f"p{i}",
            "kind": "openai" if i % 2 else "anthropic",
            "base_url": f"https://llm{i}.example.com/v1",
            "api_key_env": f"KEY_{i}",
        }
        for i in range(PROVIDERS)
    ]
    models = [
        {"id": f"m{i}-{j}", "provider": f"p{i}", "context_window": 128_000}
        for i in range(PROVIDERS)
        for j in range(2)
    ]
    return {"providers": providers, "models": models}


def _times_ms(build: Callable[[], object], rounds: int) -> list[float]:
    for _ in range(20):
        build()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        build()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


REPLY = {
    "id": "c",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
}


def _bound_call_us(blocks: int, calls: int) -> tuple[float, float]:
    """Per-call microseconds of (client, bound view), interleaved blocks, over
    `MockTransport` (the deterministic backend keeps a growing history)."""
    import httpx

    config = {
        "providers": [{"id": "up", "kind": "openai", "auth_header": "none"}],
        "models": [{"id": "m", "provider": "up"}],
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=REPLY))
    client = palyra.Palyra(config, transport=transport)
    view = client.bind(agent="planner", session="s-1", tags={"team": "a"})
    messages = [{"role": "user", "content": "hi"}]
    for target in (client, view):
        for _ in range(200):
            target.chat(messages)
    means: dict[str, list[float]] = {"client": [], "view": []}
    for block in range(blocks):
        order = [("client", client), ("view", view)]
        for name, target in order if block % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            for _ in range(calls):
                target.chat(messages)
            means[name].append((time.perf_counter() - started) / calls * 1e6)
    return median(means["client"]), median(means["view"])


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    rounds = 50 if quick else 300
    banner(f"construction: {PROVIDERS} providers, {rounds} builds; bind")
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["93.184.215.14"]

    data = twenty_providers()
    parsed = palyra.PalyraConfig.from_dict(data)
    from_dict = _times_ms(lambda: palyra.Palyra(data, resolver=resolver), rounds)
    from_config = _times_ms(lambda: palyra.Palyra(parsed, resolver=resolver), rounds)
    client = palyra.Palyra()
    bind_us = [t * 1000 for t in _times_ms(lambda: client.bind(agent="a"), rounds)]
    tagged = {"team": "a", "env": "prod"}
    bind_tags_us = [
        t * 1000 for t in _times_ms(lambda: client.bind(agent="a", tags=tagged), rounds)
    ]
    blocks, calls = (6, 200) if quick else (20, 500)
    plain_us, bound_us = _bound_call_us(blocks, calls)
    rows = [
        ["Palyra(dict), 20 providers", median(from_dict), percentile(from_dict, 90)],
        [
            "Palyra(PalyraConfig), 20 providers",
            median(from_config),
            percentile(from_config, 90),
        ],
        ["client.bind(agent=...) (ms)", median(bind_us) / 1000, None],
        ["client.bind(agent=..., tags=2) (ms)", median(bind_tags_us) / 1000, None],
    ]
    print(
        table(["what", "median ms", "p90 ms"], [[r[0], r[1], r[2] or ""] for r in rows])
    )
    built = median(from_dict)
    print(
        f"\nbuilding from a {PROVIDERS}-provider dict: {built:.3f} ms (target <="
        f" {TARGET_MS:g} ms): {verdict(built, TARGET_MS)}; lookups while building:"
        f" {len(lookups)}"
    )
    print(
        f"bind: {median(bind_us):.2f} us ({median(bind_tags_us):.2f} us with 2 tags);"
        f" a call through a bound view: {bound_us - plain_us:+.2f} us"
        f" ({plain_us:.1f} vs {bound_us:.1f} us per chat over MockTransport)"
    )
    return {
        "from_dict_ms_median": built,
        "from_dict_ms_p90": percentile(from_dict, 90),
        "from_config_ms_median": median(from_config),
        "target_ms": TARGET_MS,
        "verdict": verdict(built, TARGET_MS),
        "lookups_while_building": len(lookups),
        "bind_us_median": median(bind_us),
        "bind_with_tags_us_median": median(bind_tags_us),
        "bound_call_added_us": bound_us - plain_us,
    }
