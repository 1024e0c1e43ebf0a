"""Issue 13's ``/v1`` surface under uvicorn, against the upstream alone and
LiteLLM's proxy, all in one run.

Three processes besides this one: a fast canned upstream on 127.0.0.1
(``bench/_fast_upstream.py``, raw asyncio), the gateway under test (``uvicorn``
with 1 worker serving ``bench/_gateway_app.py``: palyra's surface with API
tokens, the SQLite ledger and a budget, as ``palyra serve`` runs it), and the
closed-loop load generator (``bench/_load.py``, raw sockets). Each scenario is
run against the upstream directly and through the gateway:

- chat and streamed chat at 64 connections: requests per second, p50/p99;
- the same at 1 connection, where latency is not queueing: what the gateway
  adds to each request (p50, p99) and to a stream's first byte;
- the gateway's RSS after a warm-up and again after 50,000 more requests.

LiteLLM's proxy (``litellm --num_workers 1``, no database, the master key it
requires: its lightest setting) is measured with the same generator when
found: ``PALYRA_BENCH_LITELLM``, or ``.nox/litellm/bin/litellm`` (``nox -s
bench`` makes that venv; LiteLLM is never a palyra dependency).

Targets: throughput at least 10x LiteLLM's; at most 1 ms added at p50 and
3 ms at p99; at most 1 ms added to a stream's first byte; RSS drift at most
5 MB over 50,000 requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._common import ROOT, banner, table, verdict

KEY = "sk-bench-0123456789abcdef"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
STREAM = {**CHAT, "stream": True}
THROUGHPUT_RATIO = 10.0
ADDED_P50_MS, ADDED_P99_MS, TTFB_MS, RSS_MB = 1.0, 3.0, 1.0, 5.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on {port} exited: {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port} within {seconds} s")


@contextlib.contextmanager
def _process(
    argv: list[str], port: int, env: dict[str, str], wait: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 (a pipe left unread would fill)
    process = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log
    )
    try:
        try:
            _wait(port, process, wait)
        except RuntimeError as exc:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-600:]
            raise RuntimeError(f"{exc}; its output ends: {tail}") from None
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _load(
    port: int,
    body: dict[str, Any],
    connections: int,
    requests: int,
    headers: list[str],
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    argv = [sys.executable, "bench/_load.py", str(port), "/v1/chat/completions"]
    argv += [f.name, "--connections", str(connections), "--requests", str(requests)]
    argv += ["--warmup", str(max(requests // 10, connections))]
    for header in headers:
        argv += ["--header", header]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    os.unlink(f.name)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    bad = {k: v for k, v in figures["statuses"].items() if k != "200"}
    if bad or figures["failures"]:
        raise RuntimeError(f"answers other than 200: {bad} {figures['failures']}")
    return figures


def _rss_mb(pid: int) -> float:
    """The resident memory of the worker: uvicorn's child if it has one."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    target = int(kids[0]) if kids else pid
    for line in Path(f"/proc/{target}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _scenarios(
    port: int, headers: list[str], sizes: dict[str, int]
) -> dict[str, dict[str, Any]]:
    return {
        "chat_64": _load(port, CHAT, 64, sizes["many"], headers),
        "stream_64": _load(port, STREAM, 64, sizes["many"], headers),
        "chat_1": _load(port, CHAT, 1, sizes["one"], headers),
        "stream_1": _load(port, STREAM, 1, sizes["one"], headers),
    }


def _palyra(up: int, sizes: dict[str, int], home: str) -> dict[str, Any]:
    env = {
        "BENCH_UPSTREAM": f"http://127.0.0.1:{up}/v1",
        "BENCH_UPSTREAM_KEY": KEY,
        "PALYRA_HOME": home,
    }
    os.environ.update(env)
    from bench._gateway_app import client

    with client() as made:
        _, secret = made.tokens.create("bench")
    port = _port()
    argv = [sys.executable, "-m", "uvicorn", "bench._gateway_app:app", "--factory"]
    argv += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    argv += ["--no-access-log"]
    with _process(argv, port, env) as process:
        headers = [f"authorization: Bearer {secret}"]
        found = _scenarios(port, headers, sizes)
        _load(port, CHAT, 64, 5_000, headers)  # settle caches and pools
        before = _rss_mb(process.pid)
        _load(port, CHAT, 64, sizes["memory"], headers)
        found["rss_mb"] = {"before": before, "after": _rss_mb(process.pid)}
    return found


def _litellm_executable() -> str | None:
    given = os.environ.get("PALYRA_BENCH_LITELLM")
    if given:
        return given
    local = ROOT / ".nox" / "litellm" / "bin" / "litellm"
    return str(local) if local.exists() else shutil.which("litellm")


def _litellm(up: int, sizes: dict[str, int]) -> dict[str, Any] | None:
    executable = _litellm_executable()
    if executable is None:
        print("LiteLLM: not installed (nox -s bench installs it), skipped")
        return None
    folder = tempfile.mkdtemp(prefix="palyra-bench-litellm-")
    config = Path(folder) / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: http://127.0.0.1:{up}/v1\n"
        f"      api_key: {KEY}\n"
    )
    port = _port()
    argv = [executable, "--config", str(config), "--port", str(port)]
    argv += ["--num_workers", "1"]
    master = "sk-" + secrets.token_hex(32)  # it refuses to start without one
    env = {
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MASTER_KEY": master,
    }
    auth = [f"authorization: Bearer {master}"]
    try:
        with _process(argv, port, env, wait=180.0):
            _load(port, CHAT, 8, 200, auth)  # its first requests are slow
            return {
                "chat_64": _load(port, CHAT, 64, sizes["litellm"], auth),
                "stream_64": _load(port, STREAM, 64, sizes["litellm"], auth),
            }
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"LiteLLM: could not be measured ({exc}), skipped")
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _report(direct: dict[str, Any], ours: dict[str, Any], lite: Any) -> dict[str, Any]:
    rows = []
    for name in ("chat_64", "stream_64", "chat_1", "stream_1"):
        for who, figures in (("upstream", direct), ("palyra", ours), ("litellm", lite)):
            if figures and name in figures:
                f = figures[name]
                rows.append(
                    [
                        f"{name} {who}",
                        f["rps"],
                        f["p50_ms"],
                        f["p99_ms"],
                        f["ttfb_p50_ms"],
                    ]
                )
    print(table(["scenario", "req/s", "p50 ms", "p99 ms", "first byte p50"], rows))
    added_p50 = ours["chat_1"]["p50_ms"] - direct["chat_1"]["p50_ms"]
    added_p99 = ours["chat_1"]["p99_ms"] - direct["chat_1"]["p99_ms"]
    ttfb = ours["stream_1"]["ttfb_p50_ms"] - direct["stream_1"]["ttfb_p50_ms"]
    drift = ours["rss_mb"]["after"] - ours["rss_mb"]["before"]
    ratio = ours["chat_64"]["rps"] / lite["chat_64"]["rps"] if lite else float("nan")
    stream_ratio = (
        ours["stream_64"]["rps"] / lite["stream_64"]["rps"] if lite else float("nan")
    )
    checks = [
        [
            "added latency p50 (1 conn)",
            added_p50,
            ADDED_P50_MS,
            verdict(added_p50, ADDED_P50_MS),
        ],
        [
            "added latency p99 (1 conn)",
            added_p99,
            ADDED_P99_MS,
            verdict(added_p99, ADDED_P99_MS),
        ],
        ["stream first byte added p50", ttfb, TTFB_MS, verdict(ttfb, TTFB_MS)],
        ["RSS drift over the run, MB", drift, RSS_MB, verdict(drift, RSS_MB)],
        [
            "throughput vs LiteLLM (chat)",
            ratio,
            THROUGHPUT_RATIO,
            "n/a" if not lite else verdict(-ratio, -THROUGHPUT_RATIO),
        ],
        [
            "throughput vs LiteLLM (stream)",
            stream_ratio,
            THROUGHPUT_RATIO,
            "n/a" if not lite else verdict(-stream_ratio, -THROUGHPUT_RATIO),
        ],
    ]
    print(table(["target", "measured", "limit", "verdict"], checks))
    return {
        "upstream": direct,
        "palyra": ours,
        "litellm": lite,
        "added_p50_ms": added_p50,
        "added_p99_ms": added_p99,
        "stream_ttfb_added_ms": ttfb,
        "rss_drift_mb": drift,
        "vs_litellm_chat": ratio,
        "vs_litellm_stream": stream_ratio,
    }


def run(quick: bool) -> dict[str, Any]:
    """The benchmark; figures for bench/results/latest.json."""
    banner("/v1 surface under uvicorn (issue 13)")
    sizes = (
        {"many": 2_000, "one": 300, "memory": 5_000, "litellm": 300}
        if quick
        else {"many": 20_000, "one": 3_000, "memory": 50_000, "litellm": 2_000}
    )
    home = tempfile.mkdtemp(prefix="palyra-bench-gateway-")
    up = _port()
    upstream = [sys.executable, "bench/_fast_upstream.py", str(up)]
    try:
        with _process(upstream, up, {}):
            direct = _scenarios(up, [], sizes)
            ours = _palyra(up, sizes, home)
            lite = _litellm(up, sizes)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return _report(direct, ours, lite)
