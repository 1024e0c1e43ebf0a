"""The worked deployment of docs/scale-out.md, run as written: its config
file (addresses pointed at this run's servers, the limit cut to ten calls'
worth), its commands, four uvicorn workers, Redis and PostgreSQL, and the
official OpenAI SDK; the budget holds across the workers, and PostgreSQL
keeps every admitted call."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai

import palyra
from palyra._governance import estimated_total
from palyra._tokens import TiktokenCounter
from tests.conftest import FAKE_KEY
from tests.servers import free_port
from tests.state.test_processes import exact_reply
from tests.test_docs import ROOT, blocks
from tests.upstream import Upstream

PAGE = ROOT / "docs" / "scale-out.md"
USER = [{"role": "user", "content": "three words here"}]
FITS = 10


def _section() -> tuple[str, list[str]]:
    """The page's deployment config and its ``$`` command lines."""
    found = blocks(PAGE)
    [config] = [b.code for b in found if b.code.startswith("# deploy.toml")]
    [console] = [b.code for b in found if "palyra serve" in b.code]
    lines = [line[2:] for line in console.splitlines() if line.startswith("$ ")]
    return config, lines


def _pointed(config: str, upstream: str, redis: str, dsn: str, limit: str) -> str:
    config = config.replace('"https://api.openai.com/v1"', f'"{upstream}"')
    config = re.sub(r'url = "redis://[^"]+"', f'url = "{redis}"', config)
    config = re.sub(r'url = "postgresql://[^"]+"', f'url = "{dsn}"', config)
    return re.sub(r'hard_limit = "[^"]+"', f'hard_limit = "{limit}"', config)


def test_the_worked_deployment_runs_as_written(
    redis_url: str, postgres_dsn: str, upstream: Upstream, tmp_path: Path
) -> None:
    text, commands = _section()
    prompt = TiktokenCounter().estimate_chat("gpt-4o-mini", USER).prompt_tokens
    config = tmp_path / "deploy.toml"
    config.write_text(_pointed(text, upstream.base_url, redis_url, postgres_dsn, "1"))
    with palyra.Palyra(config) as sizing:
        entry = sizing.usage.price("openai", "gpt-4o-mini", datetime.now(UTC))
    assert entry is not None
    cost = estimated_total(entry, prompt, 0, 10)
    config.write_text(
        _pointed(text, upstream.base_url, redis_url, postgres_dsn, str(cost * FITS))
    )
    upstream.enqueue(*[exact_reply(prompt) for _ in range(30)])
    env = {**os.environ, "PALYRA_HOME": str(tmp_path / "home"),
           "OPENAI_API_KEY": FAKE_KEY}  # fmt: skip
    port = free_port()
    secret, server = "", None
    try:
        for line in commands:
            words = shlex.split(line)
            if words[0] == "pip":
                continue  # this environment has the extras
            words = [w.replace("0.0.0.0", "127.0.0.1") for w in words]  # noqa: S104
            words = [str(port) if w == "8000" else w for w in words]
            argv = [sys.executable, "-m", "palyra", *words[1:]]
            if "serve" in words:
                server = subprocess.Popen(
                    argv, cwd=tmp_path, env=env, text=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                continue
            done = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"$ {line}\n{done.stderr}"
            if "tokens" in words and "create" in words:
                secret = done.stdout.strip()
        assert server is not None
        assert secret.startswith("pk-palyra-")
        _wait_for(port, server)
        sdk = openai.OpenAI(
            api_key=secret, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        )

        def call(_: int) -> str:
            try:
                sdk.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=USER,
                    max_tokens=10,  # type: ignore[arg-type]
                )
            except openai.RateLimitError as exc:
                return str(exc.code)
            return "ok"

        with ThreadPoolExecutor(24) as pool:
            outcomes = list(pool.map(call, range(24)))
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=30)
    assert outcomes.count("ok") == FITS, outcomes
    assert outcomes.count("budget_exceeded") == 24 - FITS
    assert len(upstream.requests) == FITS
    with palyra.Palyra(config) as reader:  # the ledger: PostgreSQL
        rows = {r.key[0]: r for r in reader.usage.totals(by="status")}
    assert rows["ok"].calls == FITS
    assert rows["ok"].cost_total == cost * FITS


def _wait_for(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert time.monotonic() < deadline, "palyra serve did not start"
        time.sleep(0.1)
