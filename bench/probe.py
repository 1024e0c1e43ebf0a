"""One sample of palyra's cost, for whichever palyra is importable (``bench/ab.py``).

Run as a fresh process: it times ``import palyra`` first, then the first
client, then warm figures: building a client from a 20-provider config, and
the per-call overhead of ``Palyra.chat`` over raw httpx (``MockTransport``, no
socket, and a real loopback server). Only public API is used, so the same
probe measures two versions of palyra side by side. Prints one JSON object.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()
import palyra  # noqa: E402

_T1 = time.perf_counter()
_FIRST = palyra.Palyra()
_T2 = time.perf_counter()

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three primary colours."},
]
REPLY = json.dumps(
    {
        "id": "chatcmpl-probe",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Red, yellow, blue."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
).encode()


def _public_resolver(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]  # never used to connect: construction only


def twenty_providers() -> dict[str, Any]:
    """20 OpenAI-compatible providers with explicit base URLs, 2 models each."""
    providers = [
        {
            "id": f"p{i}",
            "kind": "openai",
            "base_url": f"https://api{i}.example.com/v1",
            "api_key_env": "PROBE_KEY",
        }
        for i in range(20)
    ]
    models = [
        {"id": f"m{i}-{j}", "provider": f"p{i}", "context_window": 128000}
        for i in range(20)
        for j in range(2)
    ]
    return {"providers": providers, "models": models}


def construct_ms(rounds: int) -> float:
    """Median milliseconds to build a client from a parsed 20-provider config."""
    config = twenty_providers()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        palyra.Palyra(config, resolver=_public_resolver)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _config(base_url: str) -> dict[str, Any]:
    return {
        "providers": [
            {"id": "up", "kind": "openai", "base_url": base_url, "auth_header": "none"}
        ],
        "models": [{"id": "m", "provider": "up", "context_window": 128000}],
    }


def _interleave(
    raw: Callable[[], object], pal: Callable[[], object], blocks: int, per: int
) -> tuple[float, float]:
    """Median per-call microseconds of (raw, palyra), alternating blocks."""
    for _ in range(100):
        raw()
        pal()
    means: dict[str, list[float]] = {"raw": [], "pal": []}
    for block in range(blocks):
        order = [("raw", raw), ("pal", pal)]
        for name, fn in order if block % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            for _ in range(per):
                fn()
            means[name].append((time.perf_counter() - started) / per * 1e6)
    return statistics.median(means["raw"]), statistics.median(means["pal"])


def mock_overhead(blocks: int, per: int) -> dict[str, float]:
    """Palyra.chat against raw httpx over MockTransport: CPU only."""
    headers = {"content-type": "application/json", "x-request-id": "req_probe"}
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers=headers, content=REPLY)
    )
    url = "http://127.0.0.1:9/v1"
    payload = {"model": "m", "messages": MESSAGES}
    with (
        httpx.Client(transport=transport) as http,
        palyra.Palyra(_config(url), transport=transport) as client,
    ):
        raw, pal = _interleave(
            lambda: http.post(url + "/chat/completions", json=payload).json(),
            lambda: client.chat(MESSAGES),
            blocks,
            per,
        )
    return {"raw_us": raw, "palyra_us": pal, "overhead_us": pal - raw}


def loopback_overhead(blocks: int, per: int) -> dict[str, float]:
    """Palyra.chat against raw httpx to a real HTTP server on 127.0.0.1."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tests.upstream import Upstream

    payload = {"model": "m", "messages": MESSAGES}
    with Upstream() as server:
        url = server.base_url
        with httpx.Client() as http, palyra.Palyra(_config(url)) as client:
            raw, pal = _interleave(
                lambda: http.post(url + "/chat/completions", json=payload).json(),
                lambda: client.chat(MESSAGES),
                blocks,
                per,
            )
    return {"raw_us": raw, "palyra_us": pal, "overhead_us": pal - raw}


def main() -> None:
    """Measure and print one JSON sample."""
    quick = "--quick" in sys.argv
    blocks, per = (6, 100) if quick else (16, 200)
    sample = {
        "import_s": _T1 - _T0,
        "first_client_s": _T2 - _T0,
        "construct_20_ms": construct_ms(20 if quick else 100),
        "mock": mock_overhead(blocks, per),
        "loopback": loopback_overhead(blocks // 2, per // 2),
    }
    print(json.dumps(sample))


if __name__ == "__main__":
    main()
