"""``palyra serve`` (issue 13): the configuration checked before anything
starts, a clear message without the server extra, and a real uvicorn
process (two workers) answering the official SDK on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

import palyra
from tests.asgi.server import free_port

CONFIG = """
[[providers]]
id = "local"
kind = "deterministic"

[[models]]
id = "bot"
provider = "local"

[ledger]
enabled = false
"""


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "palyra", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def wait_until_up(server: subprocess.Popen[str], url: str) -> None:
    """Until ``url`` answers 401 (served, asking for a token), 30 s at most."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url).status_code == 401:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert time.monotonic() < deadline, "palyra serve did not start"
        time.sleep(0.1)


def test_a_bad_config_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[providers]]\nid = "x"\nkind = "nope"\n')
    result = run("serve", "--config", str(bad), "--port", str(free_port()))
    assert result.returncode == 2
    assert "providers[0].kind" in result.stderr
    missing = run("serve", "--config", str(tmp_path / "none.toml"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_without_uvicorn_it_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; from palyra._cli import main;"
        f" sys.exit(main(['serve', '--config', {str(tmp_path / 'x.toml')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "pip install 'palyra[server]'" in result.stderr


def test_serve_answers_the_sdk_with_two_workers(tmp_path: Path) -> None:
    config = tmp_path / "palyra.toml"
    config.write_text(CONFIG)
    home = tmp_path / "home"
    maker = palyra.Palyra(config, home=home, ledger=False)
    _, secret = maker.tokens.create("cli")
    maker.close()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "palyra",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env={**os.environ, "PALYRA_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_up(server, f"http://127.0.0.1:{port}/v1/models")
        sdk = openai.OpenAI(api_key=secret, base_url=f"http://127.0.0.1:{port}/v1")
        for _ in range(4):  # spread over both workers
            reply = sdk.chat.completions.create(
                model="bot", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content == "hi"
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)


def test_ctrl_c_exits_130_and_a_busy_port_exits_1(tmp_path: Path) -> None:
    import signal
    import socket

    config = tmp_path / "palyra.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "PALYRA_HOME": str(tmp_path / "home")}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "palyra", "serve", "--config", str(config),
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert server.poll() is None
            assert time.monotonic() < deadline, "palyra serve did not start"
            time.sleep(0.1)
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=30) == 130
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = run("serve", "--config", str(config), "--port", str(taken), env=env)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        f"could not serve on 127.0.0.1:{taken} (see above)"
    )


def test_serve_console_signs_in_an_admin(tmp_path: Path) -> None:
    """``palyra serve --console``: the console at /console of a real
    uvicorn process; refused with several workers (its sessions live in one
    process)."""
    config = tmp_path / "palyra.toml"
    config.write_text(CONFIG)
    home = tmp_path / "home"
    maker = palyra.Palyra(config, home=home, ledger=False)
    _, admin = maker.tokens.create("ops", scopes=["admin"])
    maker.close()
    refused = run("serve", "--config", str(config), "--console", "--workers", "2")
    assert refused.returncode == 2
    assert "--console serves from one worker" in refused.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "palyra", "serve", "--config", str(config),
         "--port", str(port), "--console"],
        env={**os.environ, "PALYRA_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, f"{base}/console/v1/health")
        with httpx.Client(base_url=base) as browser:
            signed = browser.post("/console/login", json={"token": admin})
            assert signed.status_code == 200
            tokens = browser.get("/console/v1/tokens")
            assert [t["name"] for t in tokens.json()] == ["ops"]
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
