"""Benchmark 2: per-call overhead of ``Palyra.chat`` / ``achat`` over raw httpx.

Both sides talk to the same loopback upstream (``tests.upstream.Upstream``,
default echo behaviour) with the same three-message payload. After a warm-up,
calls run in interleaved blocks (raw, palyra, palyra, raw, ...); every call is
timed on its own. Reported: the median per call of each side over all calls,
and the median over blocks of (palyra block mean - raw block mean), the
overhead compared with the target.

The raw baseline is what a hand-written client does at least:
``client.post(url, json=payload)`` then ``response.json()``.

The palyra side keeps no usage ledger (``ledger=False``; usage and cost are
still worked out for every reply): what the ledger and budgets add is
``bench/governance.py``'s figure.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

import palyra
from bench._common import banner, median, percentile, table, verdict
from tests.upstream import Upstream

TARGET_MS = 0.25
MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Name three primary colours."},
]
PAYLOAD = {"model": MODEL, "messages": MESSAGES}


def _config(base_url: str) -> dict[str, Any]:
    return {
        "providers": [
            {
                "id": "loopback",
                "kind": "openai",
                "base_url": base_url,
                "auth_header": "none",
            }
        ],
        "models": [{"id": MODEL, "provider": "loopback", "context_window": 128_000}],
    }


# ----------------------------------------------------------------- measuring


def _summarise(
    raw_calls: list[float],
    pal_calls: list[float],
    raw_blocks: list[float],
    pal_blocks: list[float],
) -> dict[str, Any]:
    diffs = [p - r for p, r in zip(pal_blocks, raw_blocks, strict=True)]
    ms = 1000.0
    return {
        "calls_per_side": len(raw_calls),
        "blocks": len(raw_blocks),
        "raw_median_ms": median(raw_calls) * ms,
        "raw_p95_ms": percentile(raw_calls, 95) * ms,
        "palyra_median_ms": median(pal_calls) * ms,
        "palyra_p95_ms": percentile(pal_calls, 95) * ms,
        "overhead_median_of_block_diffs_ms": median(diffs) * ms,
        "overhead_block_diffs_p10_ms": percentile(diffs, 10) * ms,
        "overhead_block_diffs_p90_ms": percentile(diffs, 90) * ms,
        "overhead_diff_of_medians_ms": (median(pal_calls) - median(raw_calls)) * ms,
        "ratio_of_medians": median(pal_calls) / median(raw_calls),
    }


def _interleave_sync(
    raw: Callable[[], object],
    pal: Callable[[], object],
    warmup: int,
    blocks: int,
    per_block: int,
) -> dict[str, Any]:
    for _ in range(warmup):
        raw()
        pal()
    clock = time.perf_counter
    calls: dict[str, list[float]] = {"raw": [], "palyra": []}
    means: dict[str, list[float]] = {"raw": [], "palyra": []}
    sides = {"raw": raw, "palyra": pal}
    for b in range(blocks):
        order = ("raw", "palyra") if b % 2 == 0 else ("palyra", "raw")
        for name in order:
            fn = sides[name]
            samples = []
            for _ in range(per_block):
                t = clock()
                fn()
                samples.append(clock() - t)
            calls[name] += samples
            means[name].append(sum(samples) / per_block)
    return _summarise(calls["raw"], calls["palyra"], means["raw"], means["palyra"])


async def _interleave_async(
    raw: Callable[[], Awaitable[object]],
    pal: Callable[[], Awaitable[object]],
    warmup: int,
    blocks: int,
    per_block: int,
) -> dict[str, Any]:
    for _ in range(warmup):
        await raw()
        await pal()
    clock = time.perf_counter
    calls: dict[str, list[float]] = {"raw": [], "palyra": []}
    means: dict[str, list[float]] = {"raw": [], "palyra": []}
    sides = {"raw": raw, "palyra": pal}
    for b in range(blocks):
        order = ("raw", "palyra") if b % 2 == 0 else ("palyra", "raw")
        for name in order:
            fn = sides[name]
            samples = []
            for _ in range(per_block):
                t = clock()
                await fn()
                samples.append(clock() - t)
            calls[name] += samples
            means[name].append(sum(samples) / per_block)
    return _summarise(calls["raw"], calls["palyra"], means["raw"], means["palyra"])


# ------------------------------------------------------------------ subjects


def _sync_loopback(
    upstream: Upstream, warmup: int, blocks: int, per_block: int
) -> dict[str, Any]:
    url = upstream.base_url + "/chat/completions"
    with (
        httpx.Client() as http,
        palyra.Palyra(_config(upstream.base_url), ledger=False) as client,
    ):

        def raw() -> object:
            response = http.post(url, json=PAYLOAD)
            response.raise_for_status()
            return response.json()

        def pal() -> object:
            return client.chat(MESSAGES)

        return _interleave_sync(raw, pal, warmup, blocks, per_block)


def _async_loopback(
    upstream: Upstream, warmup: int, blocks: int, per_block: int
) -> dict[str, Any]:
    url = upstream.base_url + "/chat/completions"

    async def main() -> dict[str, Any]:
        async with (
            httpx.AsyncClient() as http,
            palyra.Palyra(_config(upstream.base_url), ledger=False) as client,
        ):

            async def raw() -> object:
                response = await http.post(url, json=PAYLOAD)
                response.raise_for_status()
                return response.json()

            async def pal() -> object:
                return await client.achat(MESSAGES)

            return await _interleave_async(raw, pal, warmup, blocks, per_block)

    return asyncio.run(main())


def _canned_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Name three primary colours.",
                        "refusal": None,
                    },
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17},
        }
    ).encode()


def _sync_in_memory(warmup: int, blocks: int, per_block: int) -> dict[str, Any]:
    """Same comparison over ``httpx.MockTransport``: CPU cost only, no socket."""
    body = _canned_body()
    headers = {"content-type": "application/json", "x-request-id": "req_bench"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, content=body)

    base_url = "http://127.0.0.1:9/v1"
    url = base_url + "/chat/completions"
    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(transport=transport) as http,
        palyra.Palyra(_config(base_url), transport=transport, ledger=False) as client,
    ):

        def raw() -> object:
            response = http.post(url, json=PAYLOAD)
            response.raise_for_status()
            return response.json()

        def pal() -> object:
            return client.chat(MESSAGES)

        return _interleave_sync(raw, pal, warmup, blocks, per_block)


# ----------------------------------------------------------------- profiling


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name  # a built-in
    if "/site-packages/" in filename:
        filename = filename.split("/site-packages/", 1)[1]
    elif "/palyra/" in filename:
        filename = "palyra/" + filename.rsplit("/palyra/", 1)[1]
    elif "/lib/python3" in filename:
        filename = "stdlib/" + filename.split("/lib/python3", 1)[1].split("/", 1)[1]
    return f"{filename}:{line}({name})"


Key = tuple[str, int, str]
Entry = tuple[Any, Any, float, float, dict[Key, Any]]


def _rows(
    entries: list[tuple[Key, Entry]], calls: int, top: int
) -> list[dict[str, Any]]:
    return [
        {
            "function": _where(key),
            "calls_per_chat": value[1] / calls,
            "own_us_per_chat": value[2] / calls * 1e6,
            "cum_us_per_chat": value[3] / calls * 1e6,
        }
        for key, value in entries[:top]
    ]


def _ours(key: Key) -> bool:
    return "/palyra/" in key[0]


def _profile(upstream: Upstream, calls: int, top: int = 15) -> dict[str, Any]:
    """cProfile over ``calls`` loopback ``Palyra.chat`` calls (after a warm-up)."""
    with palyra.Palyra(_config(upstream.base_url), ledger=False) as client:
        for _ in range(50):
            client.chat(MESSAGES)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            client.chat(MESSAGES)
        profiler.disable()
    entries: dict[Key, Entry] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    ranked = sorted(entries.items(), key=lambda kv: kv[1][3], reverse=True)

    # The part palyra adds: palyra's own functions, and whatever only palyra
    # code calls (pydantic validation, json encoding, httpx.Request building),
    # leaving out the drivers whose cumulative time holds httpx's Client.send
    # (the HTTP exchange itself, which the raw baseline pays too).
    send_cum = max(
        (v[3] for k, v in entries.items() if k[2] == "send" and "/httpx/" in k[0]),
        default=float("inf"),
    )
    own = [
        (k, v)
        for k, v in ranked
        if v[3] < 0.5 * send_cum and (_ours(k) or (v[4] and all(map(_ours, v[4]))))
    ]
    return {
        "calls": calls,
        "profiled_us_per_chat": sum(v[2] for v in entries.values()) / calls * 1e6,
        "note": "times are inflated by cProfile; compare rows, not absolutes",
        "top_cumulative": _rows(ranked, calls, top),
        "top_palyra_side": _rows(own, calls, top),
    }


# ---------------------------------------------- the call without the network


class _Offline:
    """palyra's whole chat flow with a canned upstream answer and no transport.

    Drives the sans-I/O pipeline generator by hand (private internals), so it
    times exactly what palyra does around the HTTP exchange.
    """

    def __init__(self, base_url: str) -> None:
        from palyra._core import NOBODY, CallContext
        from palyra._core.steps import Outcome
        from palyra._providers import Target, request_id
        from palyra._request import chat_request

        self.client = palyra.Palyra(_config(base_url), ledger=False)
        self.http = httpx.Client()
        self.url = base_url + "/chat/completions"
        self.response = httpx.Response(
            200,
            headers={"content-type": "application/json", "x-request-id": "req_bench"},
            content=_canned_body(),
            request=httpx.Request("POST", self.url),
        )
        registry = self.client._registry
        model = registry.resolve(None, "chat")
        counter = self.client._pipeline._counter()
        adapter = self.client._adapters.for_model(model)
        target = Target(model, None)
        request = chat_request(MESSAGES, {}, stream=False)
        pipeline = self.client._pipeline
        response, http, url = self.response, self.http, self.url
        serial = iter(range(10**9))
        context = CallContext("chat", model, NOBODY)

        def flow() -> object:
            steps = pipeline.chat(None, chat_request(MESSAGES, {}, False), NOBODY)
            next(steps)
            try:
                steps.send(Outcome(response, None, 1.0))
            except StopIteration as stop:
                return stop.value
            raise RuntimeError("the chat flow asked for a second attempt")

        def raw_flow() -> object:
            http.build_request("POST", url, json=PAYLOAD)
            return response.json()

        def new_text() -> list[dict[str, str]]:
            n = next(serial)
            return [{**m, "content": f"{m['content']} #{n}"} for m in MESSAGES]

        self.flow = flow
        # (label, function, is the raw-httpx equivalent of the row above)
        self.stages: list[tuple[str, Callable[[], object], bool]] = [
            ("whole chat flow, no transport (canned reply)", flow, False),
            ("  raw: build_request + response.json()", raw_flow, True),
            (
                "chat_request (check messages)",
                lambda: chat_request(MESSAGES, {}, False),
                False,
            ),
            ("registry.resolve", lambda: registry.resolve(None, "chat"), False),
            (
                "estimate_chat (memo hit)",
                lambda: counter.estimate_chat(model.upstream, MESSAGES, None),
                False,
            ),
            (
                "estimate_chat (new text each call)",
                lambda: counter.estimate_chat(model.upstream, new_text(), None),
                False,
            ),
            (
                "credential lookup",
                lambda: self.client._pipeline._credential(context, model),
                False,
            ),
            (
                "adapter.chat_request (httpx.Request)",
                lambda: adapter.chat_request(target, request),
                False,
            ),
            (
                "  raw: client.build_request(json=...)",
                lambda: http.build_request("POST", url, json=PAYLOAD),
                True,
            ),
            (
                "httpx.URL parse of the endpoint (inside the above)",
                lambda: httpx.URL(url),
                False,
            ),
            (
                "adapter.chat_response (pydantic)",
                lambda: adapter.chat_response(target, response),
                False,
            ),
            ("  raw: response.json()", response.json, True),
            ("request_id(response)", lambda: request_id(response), False),
            (
                "CallContext(...).info() (PalyraInfo)",
                lambda: CallContext("chat", model).info(),
                False,
            ),
        ]

    def close(self) -> None:
        self.http.close()
        self.client.close()

    def stage_times(self, rounds: int, repeat: int) -> list[dict[str, Any]]:
        """Median microseconds per stage; rounds outside, stages inside, so
        noise spreads over every stage alike."""
        clock = time.perf_counter
        runs: dict[str, list[float]] = {name: [] for name, _, _ in self.stages}
        for _, fn, _ in self.stages:
            for _ in range(200):
                fn()
        for _ in range(rounds):
            for name, fn, _ in self.stages:
                t = clock()
                for _ in range(repeat):
                    fn()
                runs[name].append((clock() - t) / repeat * 1e6)
        return [
            {"stage": name, "us": median(runs[name]), "raw_equivalent": baseline}
            for name, _, baseline in self.stages
        ]

    def profile(self, calls: int, top: int = 15) -> dict[str, Any]:
        """cProfile of the offline flow, top functions by own time."""
        for _ in range(200):
            self.flow()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            self.flow()
        profiler.disable()
        entries: dict[Key, Entry] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)
        return {
            "calls": calls,
            "profiled_us_per_chat": sum(v[2] for v in entries.values()) / calls * 1e6,
            "top_own_time": _rows(ranked, calls, top),
        }


def _offline(base_url: str, rounds: int, repeat: int, calls: int) -> dict[str, Any]:
    try:
        offline = _Offline(base_url)
    except Exception as exc:  # depends on palyra internals
        note = f"unavailable: {type(exc).__name__}: {exc}"
        return {"stages": [{"stage": note, "us": None}], "profile": None}
    try:
        return {
            "stages": offline.stage_times(rounds, repeat),
            "profile": offline.profile(calls),
        }
    except Exception as exc:  # depends on palyra internals
        note = f"unavailable: {type(exc).__name__}: {exc}"
        return {"stages": [{"stage": note, "us": None}], "profile": None}
    finally:
        offline.close()


# ---------------------------------------------------------------------- run


def _print_overhead(label: str, result: dict[str, Any]) -> None:
    print(
        table(
            [label, "median ms", "p95 ms"],
            [
                ["raw httpx", result["raw_median_ms"], result["raw_p95_ms"]],
                ["palyra", result["palyra_median_ms"], result["palyra_p95_ms"]],
            ],
        )
    )
    print(
        f"overhead: median of {result['blocks']} block differences"
        f" {result['overhead_median_of_block_diffs_ms']:+.3f} ms"
        f" (p10 {result['overhead_block_diffs_p10_ms']:+.3f},"
        f" p90 {result['overhead_block_diffs_p90_ms']:+.3f});"
        f" difference of medians {result['overhead_diff_of_medians_ms']:+.3f} ms;"
        f" ratio {result['ratio_of_medians']:.2f}x"
    )


def _print_profile(rows: list[dict[str, Any]]) -> None:
    print(
        table(
            ["function", "calls/chat", "own us", "cum us"],
            [
                [
                    r["function"],
                    r["calls_per_chat"],
                    r["own_us_per_chat"],
                    r["cum_us_per_chat"],
                ]
                for r in rows
            ],
        )
    )


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the tables, return the JSON section."""
    warmup = 30 if quick else 200
    blocks = 6 if quick else 20
    per_block = 30 if quick else 100
    profile_calls = 300 if quick else 2000
    banner(
        f"overhead: Palyra.chat vs httpx post, loopback upstream, warm-up {warmup},"
        f" {blocks} blocks x {per_block} calls per side"
    )
    gc.collect()
    results: dict[str, Any] = {
        "target_ms": TARGET_MS,
        "warmup": warmup,
        "blocks": blocks,
        "calls_per_block": per_block,
        "messages": MESSAGES,
    }
    with Upstream() as upstream:
        results["sync"] = _sync_loopback(upstream, warmup, blocks, per_block)
        upstream.requests.clear()
        _print_overhead("sync (loopback)", results["sync"])
        print()
        results["async"] = _async_loopback(upstream, warmup, blocks, per_block)
        upstream.requests.clear()
        _print_overhead("async (loopback)", results["async"])
        print()
        results["sync_in_memory"] = _sync_in_memory(warmup, blocks, per_block)
        _print_overhead("sync (MockTransport, no socket)", results["sync_in_memory"])
        print()

        checks = {}
        for mode in ("sync", "async"):
            value = results[mode]["overhead_median_of_block_diffs_ms"]
            checks[mode] = {
                "value_ms": value,
                "target_ms": TARGET_MS,
                "verdict": verdict(value, TARGET_MS),
            }
            print(
                f"{mode} overhead {value:+.3f} ms per call"
                f" (target <= {TARGET_MS} ms): {checks[mode]['verdict']}"
            )
        results["checks"] = checks

        profile = _profile(upstream, profile_calls)
        upstream.requests.clear()
        results["profile"] = profile
        banner(f"profile: cProfile over {profile_calls} loopback Palyra.chat calls")
        print(
            "all functions, top 15 by cumulative time"
            f" ({profile['profiled_us_per_chat']:.0f} us per chat under the profiler)"
        )
        _print_profile(profile["top_cumulative"])
        print(
            "\npalyra side: palyra functions and what only they call, drivers"
            " around the HTTP exchange left out; top 15 by cumulative time"
        )
        _print_profile(profile["top_palyra_side"])

        offline = _offline(
            upstream.base_url,
            rounds=5 if quick else 15,
            repeat=200 if quick else 1000,
            calls=profile_calls,
        )
    results["offline"] = offline
    flow_profile = offline["profile"]
    if flow_profile is not None:
        print(
            f"\nwhole chat flow without transport (canned reply), {profile_calls}"
            f" calls, top 15 by own time"
            f" ({flow_profile['profiled_us_per_chat']:.0f} us per chat under the"
            " profiler)"
        )
        _print_profile(flow_profile["top_own_time"])
    print("\nper-stage timing without the profiler (us per call; indented: raw)")
    print(table(["stage", "us"], [[s["stage"], s["us"]] for s in offline["stages"]]))
    return results
