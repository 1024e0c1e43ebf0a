"""Benchmark 3: parsing a recorded OpenAI stream.

palyra's ``OpenAIStreamParser`` (SSE decoding, pydantic validation of every
chunk, accumulation of the final answer) against a bare split: ``body.split(
b"\\n\\n")`` and ``json.loads`` of each ``data:`` payload. Both run in the same
process, interleaved round by round. Also shown: the parser fed one network
read per event (as the upstream sends it), and ``Palyra.stream`` end to end over
``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import palyra
from bench._common import banner, median, percentile, table
from tests.upstream import fixtures_dir

FIXTURE = "openai/chat_stream_text_long.sse"


def _bare(body: bytes) -> int:
    n = 0
    for part in body.split(b"\n\n"):
        if part.startswith(b"data: "):
            payload = part[6:]
            if payload != b"[DONE]":
                json.loads(payload)
            n += 1
    return n


def _events(body: bytes) -> list[bytes]:
    return [part + b"\n\n" for part in body.split(b"\n\n") if part.strip()]


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    from palyra._providers.base import Target
    from palyra._providers.openai import OpenAIStreamParser

    path: Path = fixtures_dir() / FIXTURE
    body = path.read_bytes()
    events = _events(body)
    n_events = _bare(body)
    rounds = 7 if quick else 31
    per_round = 10 if quick else 40

    banner(
        f"stream: {FIXTURE} ({len(body):,} bytes, {n_events} events),"
        f" {rounds} rounds x {per_round} parses per side"
    )

    deterministic = palyra.Palyra()
    model = deterministic._registry.resolve(None, "chat")
    target = Target(model, None)

    def parser_whole() -> int:
        parser = OpenAIStreamParser(target, forward_usage=False)
        chunks = parser.feed(body)
        parser.close()
        return len(chunks)

    def parser_per_event() -> int:
        parser = OpenAIStreamParser(target, forward_usage=False)
        n = 0
        for event in events:
            n += len(parser.feed(event))
        parser.close()
        return n

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=iter(events),
        )

    base_url = "http://127.0.0.1:9/v1"
    client = palyra.Palyra(
        {
            "providers": [
                {
                    "id": "mock",
                    "kind": "openai",
                    "base_url": base_url,
                    "auth_header": "none",
                }
            ],
            "models": [{"id": "gpt-4o", "provider": "mock", "context_window": 128_000}],
        },
        transport=httpx.MockTransport(handler),
    )
    messages = [{"role": "user", "content": "Write a long answer."}]

    def end_to_end() -> int:
        n = 0
        with client.stream(messages) as stream:
            for _ in stream:
                n += 1
        return n

    subjects: dict[str, Callable[[], int]] = {
        "bare split + json.loads": lambda: _bare(body),
        "OpenAIStreamParser, one read": parser_whole,
        "OpenAIStreamParser, one read per event": parser_per_event,
        "Palyra.stream over MockTransport": end_to_end,
    }
    for fn in subjects.values():  # warm-up: schemas, tiktoken, caches
        for _ in range(3):
            fn()

    clock = time.perf_counter
    seconds: dict[str, list[float]] = {name: [] for name in subjects}
    names = list(subjects)
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            fn = subjects[name]
            t = clock()
            for _ in range(per_round):
                fn()
            seconds[name].append((clock() - t) / per_round)

    base = seconds["bare split + json.loads"]
    results: dict[str, Any] = {
        "fixture": FIXTURE,
        "bytes": len(body),
        "events": n_events,
        "rounds": rounds,
        "parses_per_round": per_round,
        "subjects": {},
    }
    rows = []
    for name in names:
        times = seconds[name]
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        summary = {
            "ms_per_stream_median": median(times) * 1000,
            "ms_per_stream_p90": percentile(times, 90) * 1000,
            "events_per_s_median": n_events / median(times),
            "us_per_event_median": median(times) / n_events * 1e6,
            "ratio_vs_bare_median": median(ratios),
        }
        results["subjects"][name] = summary
        rows.append(
            [
                name,
                summary["ms_per_stream_median"],
                summary["us_per_event_median"],
                summary["events_per_s_median"],
                summary["ratio_vs_bare_median"],
            ]
        )
    print(
        table(
            ["subject", "ms/stream", "us/event", "events/s", "x bare"],
            rows,
        )
    )
    client.close()
    deterministic.close()
    return results
