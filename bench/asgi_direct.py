"""The ``/v1`` app driven in-process with ASGI messages, no server: what the
surface and the client cost per request, apart from uvicorn.

``python bench/asgi_direct.py PORT [CONCURRENCY] [--profile]`` needs the canned
upstream listening on PORT (``python bench/_fast_upstream.py PORT``); it
prints requests per second, wall and CPU time per request (``--profile``:
cProfile's top functions instead). ``BENCH_LEDGER=0`` and ``BENCH_AUTH=0``
turn the ledger and the token check off. Not part of ``bench/run.py``: a
tool for finding where the time goes.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
).encode()


def _app(port: int) -> tuple[Any, Any]:
    os.environ.setdefault("BENCH_UPSTREAM", f"http://127.0.0.1:{port}/v1")
    os.environ.setdefault("BENCH_UPSTREAM_KEY", "sk-bench-0123456789abcdef")
    os.environ.setdefault("PALYRA_HOME", tempfile.mkdtemp(prefix="palyra-direct-"))
    from bench._gateway_app import client
    from palyra.asgi import create_app

    made = client()
    secret = made.tokens.create("direct")[1]
    auth = os.environ.get("BENCH_AUTH", "1") == "1"
    return create_app(made, require_auth=auth), secret


async def _one(app: Any, scope: dict[str, Any]) -> None:
    sent: list[Any] = []
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)  # the caller stays until the answer is out
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"answered {sent[0]['status']}: {sent[1:]}")


async def _run(app: Any, secret: str, requests: int, concurrency: int) -> None:
    headers = [
        (b"authorization", b"Bearer " + secret.encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "root_path": "",
        "headers": headers,
    }
    for _ in range(200):
        await _one(app, scope)
    started, cpu = time.perf_counter(), time.process_time()

    async def worker(count: int) -> None:
        for _ in range(count):
            await _one(app, scope)

    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"{requests / wall:.0f} req/s, {wall / requests * 1e6:.0f} us wall and"
        f" {cpu / requests * 1e6:.0f} us CPU per request, concurrency {concurrency}"
    )


def main() -> None:
    """Entry point."""
    port = int(sys.argv[1])
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 1
    app, secret = _app(port)
    if "--profile" in sys.argv:
        profile = cProfile.Profile()
        profile.enable()
        asyncio.run(_run(app, secret, 3_000, concurrency))
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    else:
        asyncio.run(_run(app, secret, 5_000, concurrency))


if __name__ == "__main__":
    main()
