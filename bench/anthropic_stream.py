"""Benchmark 4: translating a recorded Anthropic stream into OpenAI chunks.

palyra's ``AnthropicStreamParser`` (SSE decoding of named events, the
event-to-chunk state machine and pydantic validation of every chunk) against a
bare SSE split of the same bytes: ``body.split(b"\\n\\n")`` and ``json.loads`` of
each ``data:`` line. Target: translation costs at most 3x the bare split.

The input is the longest recorded Anthropic stream. It ends with an incomplete
tool-call argument, which palyra reports when the stream is closed; the timing
covers the translation of every event (``feed``), not that final check.
"""

from __future__ import annotations

import json
import time
from typing import Any

import palyra
from bench._common import banner, median, percentile, table, verdict
from tests.upstream import fixtures_dir

TARGET_RATIO = 3.0


def _longest() -> tuple[str, bytes]:
    files = sorted((fixtures_dir() / "anthropic").glob("*.sse"))
    path = max(files, key=lambda p: p.stat().st_size)
    return f"anthropic/{path.name}", path.read_bytes()


def _bare(body: bytes) -> int:
    n = 0
    for part in body.split(b"\n\n"):
        for line in part.split(b"\n"):
            if line.startswith(b"data: "):
                json.loads(line[6:])
                n += 1
    return n


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    from palyra._providers.anthropic_stream import AnthropicStreamParser
    from palyra._providers.base import Target

    name, body = _longest()
    n_events = _bare(body)
    rounds, per_round = (7, 50) if quick else (31, 200)
    banner(
        f"anthropic stream: {name} ({len(body):,} bytes, {n_events} events),"
        f" {rounds} rounds x {per_round} parses per side"
    )
    with palyra.Palyra() as client:
        target = Target(client._registry.resolve(None, "chat"), None)

    def translate() -> int:
        parser = AnthropicStreamParser(target, forward_usage=True)
        return len(parser.feed(body))

    subjects = {"bare SSE split + json.loads": lambda: _bare(body), "palyra": translate}
    for fn in subjects.values():
        for _ in range(20):
            fn()
    seconds: dict[str, list[float]] = {key: [] for key in subjects}
    for i in range(rounds):
        order = list(subjects) if i % 2 == 0 else list(reversed(subjects))
        for key in order:
            started = time.perf_counter()
            for _ in range(per_round):
                subjects[key]()
            seconds[key].append((time.perf_counter() - started) / per_round)
    base = seconds["bare SSE split + json.loads"]
    ratios = [t / b for t, b in zip(seconds["palyra"], base, strict=True)]
    ratio = median(ratios)
    rows = [
        [key, median(times) * 1e6, n_events / median(times)]
        for key, times in seconds.items()
    ]
    print(table(["subject", "us/stream", "events/s"], rows))
    print(
        f"translation / bare split: median ratio {ratio:.2f}x"
        f" (p90 {percentile(ratios, 90):.2f}x; target <= {TARGET_RATIO:g}x):"
        f" {verdict(ratio, TARGET_RATIO)}"
    )
    return {
        "fixture": name,
        "bytes": len(body),
        "events": n_events,
        "us_per_stream": {k: median(v) * 1e6 for k, v in seconds.items()},
        "events_per_s": {k: n_events / median(v) for k, v in seconds.items()},
        "ratio_median": ratio,
        "ratio_p90": percentile(ratios, 90),
        "target_ratio": TARGET_RATIO,
    }
