"""A closed-loop HTTP/1.1 load generator for the gateway benchmark.

``python bench/_load.py PORT PATH BODY_FILE --connections 64 --requests N``
keeps N requests in flight over that many keep-alive connections (each sends
its next request when its last answer is read whole) and prints one JSON
line: requests per second, latency percentiles, time to the first body byte
(for streams, the first event), statuses, and the failures it saw. Raw
sockets, so that the generator's own cost stays small next to a gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, float]:
    """Read one whole answer; its status and when its first body byte came."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length or 0)
        return status, time.perf_counter()
    first = 0.0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size and not first:
            first = time.perf_counter()
        await reader.readexactly(size + 2)
        if size == 0:
            return status, first or time.perf_counter()


async def _connection(
    port: int, request: bytes, left: list[int], out: dict[str, list[float]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while left[0] > 0:
            left[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status, first = await _read_answer(reader)
            done = time.perf_counter()
            out["latency"].append(done - started)
            out["ttfb"].append(first - started)
            out["status"].append(status)
    finally:
        writer.close()


def _pct(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, round((len(data) - 1) * q / 100))] * 1000


async def run(
    port: int, request: bytes, connections: int, requests: int, warmup: int
) -> dict[str, object]:
    """Warm up, then measure ``requests`` answers; the figures in ms."""
    for count in (warmup, requests):
        out: dict[str, list[float]] = {"latency": [], "ttfb": [], "status": []}
        left = [count]
        started = time.perf_counter()
        tasks = [_connection(port, request, left, out) for _ in range(connections)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - started
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    statuses: dict[str, int] = {}
    for status in out["status"]:
        statuses[str(int(status))] = statuses.get(str(int(status)), 0) + 1
    return {
        "requests": len(out["latency"]),
        "seconds": elapsed,
        "rps": len(out["latency"]) / elapsed,
        "p50_ms": _pct(out["latency"], 50),
        "p99_ms": _pct(out["latency"], 99),
        "ttfb_p50_ms": _pct(out["ttfb"], 50),
        "ttfb_p99_ms": _pct(out["ttfb"], 99),
        "statuses": statuses,
        "failures": failures[:3],
    }


def _request(path: str, body: bytes, headers: list[str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("body_file")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    request = _request(args.path, Path(args.body_file).read_bytes(), args.header)
    figures = asyncio.run(
        run(args.port, request, args.connections, args.requests, args.warmup)
    )
    print(json.dumps(figures))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
