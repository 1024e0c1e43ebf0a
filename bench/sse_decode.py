"""Benchmark 8: SSE decoding throughput against input size.

`SSEDecoder` fed in 64 KiB reads, for inputs of growing size, in two shapes:
one line that never ends (the worst case of the decoder that re-joined its
buffer on every read: quadratic) and ordinary small events (``data:`` lines
of about 200 bytes, each ended by a blank line). Target: linear, i.e. four
times the input takes at most twice the 4x of a linear decoder (the ratio of
times for 4N and N bytes stays under 8).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from bench._common import banner, median, table, verdict

READ = 64 * 1024
MiB = 1024 * 1024
TARGET_RATIO = 8.0
_EVENT = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"word "}}]}'
_EVENT = _EVENT + b" " * (200 - len(_EVENT)) + b"\n\n"


def _reads(shape: str, size: int) -> list[bytes]:
    """``size`` bytes of one shape, as the 64 KiB reads of a network."""
    if shape == "one endless line":
        return [b"data: " + b"x" * (READ - 6)] + [b"x" * READ] * (size // READ - 1)
    body = _EVENT * (size // len(_EVENT))
    return [body[i : i + READ] for i in range(0, len(body), READ)]


def _decode(reads: list[bytes]) -> float:
    from palyra._providers.sse import SSEDecoder

    decoder = SSEDecoder(max_event_bytes=None)
    gc.disable()  # a collection inside one run is noise, not the decoder
    try:
        started = time.perf_counter()
        for read in reads:
            decoder.feed(read)
        return time.perf_counter() - started
    finally:
        gc.enable()


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    sizes = [4, 16] if quick else [4, 16, 64, 256]
    rounds = 3 if quick else 7
    banner(f"sse decode: 64 KiB reads, {sizes} MiB, median of {rounds}")
    results: dict[str, Any] = {}
    rows = []
    worst = 0.0
    for shape in ("one endless line", "200-byte events"):
        times: dict[int, float] = {}
        for mb in sizes:
            reads = _reads(shape, mb * MiB)
            times[mb] = median([_decode(reads) for _ in range(rounds)])
            del reads
        for mb in sizes:
            ratio = times[mb] / times[mb // 4] if mb // 4 in times else float("nan")
            if ratio == ratio:
                worst = max(worst, ratio)
            rows.append([shape, mb, times[mb] * 1000, mb / times[mb], ratio])
        results[shape] = {
            "ms": {str(mb): t * 1000 for mb, t in times.items()},
            "mib_per_s": {str(mb): mb / t for mb, t in times.items()},
        }
    print(table(["shape", "MiB", "ms", "MiB/s", "time / time(N/4)"], rows))
    print(
        f"worst time(4N) / time(N): {worst:.2f} (target <= {TARGET_RATIO:g}):"
        f" {verdict(worst, TARGET_RATIO)}"
    )
    return {**results, "worst_ratio": worst, "target_ratio": TARGET_RATIO}
