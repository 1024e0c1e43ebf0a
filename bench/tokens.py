"""Benchmark 8: what one token estimate costs, and how close sampling comes.

Every estimate tokenizes at most a budget of characters (16,384) and samples
the rest (palyra/_tokens/budget.py). Measured here, interleaved round by
round: ``estimate_chat`` on 16 KB of prose (exact: the baseline), 1 MB and
8 MB of prose, 50 MB without a space and 50 MB of one letter, as times and as
ratios to the baseline. Then the sampled estimate's error against tiktoken's
exact count, on the project's docs and source; the first estimate of a fresh
process (loading the encoding); and the longest stall of an event loop while
``achat`` handles an 8 MB prompt.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import palyra
from bench._common import ROOT, banner, median, table
from palyra._tokens import encodings

TARGET_MS = 10.0  # "a few milliseconds" for any one estimate
_fresh = itertools.count()


def _read(pattern: str) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(ROOT.glob(pattern)))


def _repeat(text: str, size: int) -> str:
    return (text * (size // len(text) + 1))[:size]


def _no_spaces(size: int) -> str:
    digests = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(2048))
    return _repeat(base64.b64encode(digests).decode(), size)


def _subjects(docs: str) -> dict[str, Callable[[], str]]:
    """Name -> a prompt text; the 16 KB one is new every time (else the memo
    would answer it)."""
    mb1, mb8 = _repeat(docs, 1 << 20), _repeat(docs, 8 << 20)
    blob, letter = _no_spaces(50_000_000), "a" * 50_000_000

    def kb16() -> str:
        return _repeat(f"{next(_fresh)} {docs}", 16_000)

    return {
        "16 KB prose (exact, baseline)": kb16,
        "1 MB prose": lambda: mb1,
        "8 MB prose": lambda: mb8,
        "50 MB without a space": lambda: blob,
        "50 MB of one letter": lambda: letter,
    }


def _costs(docs: str, rounds: int) -> dict[str, list[float]]:
    counter = palyra.TiktokenCounter()
    counter.estimate_chat("gpt-4", [{"role": "user", "content": "warm up"}])
    subjects = _subjects(docs)
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    worst = "16 KB new messages, then 8 MB (the whole bound)"
    samples[worst] = []
    for _ in range(rounds):
        for name, make in [*subjects.items(), (worst, None)]:
            if make is None:  # the budget spent on new text, then the samples
                texts = [subjects["16 KB prose (exact, baseline)"]()[:16_000]]
                texts.append(subjects["8 MB prose"]())
            else:
                texts = [make()]
            messages = [{"role": "user", "content": text} for text in texts]
            started = time.perf_counter()
            counter.estimate_chat("gpt-4", messages)
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def _errors(corpora: dict[str, str]) -> list[list[Any]]:
    """Per corpus and size, the sampled estimate's error against the exact
    count, over seven rotations of the text (so the windows fall elsewhere)."""
    counter = palyra.TiktokenCounter()
    encode = encodings.load_bundled_cl100k().encode_ordinary
    rows = []
    for name, text in corpora.items():
        for size in (100_000, 400_000, 2_000_000):
            errors = []
            for rotation in range(7):
                at = rotation * len(text) // 7
                sample = _repeat(text[at:] + text[:at], size)
                exact = len(encode(sample))
                guess = counter.count_texts("gpt-4", [sample])[0][0]
                errors.append(100 * (guess - exact) / exact)
            mean_abs = statistics.mean(map(abs, errors))
            worst = max(map(abs, errors))
            rows.append([f"{name}, {size:,} chars", mean_abs, worst])
    return rows


def _cold_first_estimate() -> float:
    """Seconds of the first estimate in a fresh process (loads the encoding)."""
    code = (
        "import time, palyra; c = palyra.TiktokenCounter(); s = time.perf_counter();"
        " c.estimate_chat('gpt-4', [{'role': 'user', 'content': 'hi'}]);"
        " print(time.perf_counter() - s)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


async def _loop_stall(docs: str) -> tuple[float, float]:
    """Longest gap between 1 ms ticks, and the call's time, while achat
    handles 4 MB of prose and a 4 MB pasted blob (as tests/test_tokens_bounded)."""
    config = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [{"id": "m", "provider": "local", "upstream_model": "gpt-4"}],
    }
    prose = _repeat(" ".join(w for w in docs.split() if w.isalpha()), 4_000_000)
    text = prose + _no_spaces(4_000_000)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    with palyra.Palyra(config) as client:
        await client.achat([{"role": "user", "content": "warm up"}])
        client.deterministic().enqueue("ok")
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        await client.achat([{"role": "user", "content": text}], deadline=30)
        took = time.perf_counter() - started
        done.set()
        await task
    return max(gaps) * 1000, took * 1000


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the tables, return the JSON section."""
    rounds = 5 if quick else 31
    banner(f"tokens: one estimate's cost, {rounds} interleaved rounds")
    docs = _read("docs/*.md")
    samples = _costs(docs, rounds)
    base = median(next(iter(samples.values())))
    medians = {name: median(values) for name, values in samples.items()}
    print(
        table(
            ["prompt", "ms median", "ms max", "x baseline"],
            [[n, medians[n], max(v), medians[n] / base] for n, v in samples.items()],
        )
    )
    worst = max(medians.values())
    print(f"largest median {worst:.2f} ms; target <= {TARGET_MS:g} ms")
    errors = _errors({"docs": docs, "source": _read("palyra/**/*.py")})
    print(table(["sampled text", "mean |error| %", "max |error| %"], errors))
    cold = _cold_first_estimate()
    stall, call = asyncio.run(_loop_stall(docs))
    print(
        f"first estimate of a fresh process (loads cl100k_base): {cold * 1000:.0f} ms;"
        f" achat with an 8 MB prompt: {call:.0f} ms, event loop's longest stall"
        f" {stall:.0f} ms"
    )
    return {
        "ms_median": medians,
        "x_baseline": {name: value / base for name, value in medians.items()},
        "error_pct": {name: {"mean_abs": m, "max_abs": w} for name, m, w in errors},
        "cold_first_estimate_ms": cold * 1000,
        "achat_8mb_ms": call,
        "achat_8mb_loop_stall_ms": stall,
        "target_ms": TARGET_MS,
    }
