"""Refresh is single-flight: 50 threads, 50 tasks, or several processes that
all need a refresh at once cause exactly one token-endpoint request, and every
call goes out with the new token."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

import palyra
from tests.auth.authserver import AuthServer
from tests.auth.filekeyring import ENV, FileKeyring
from tests.auth.test_oauth_client import HI, oauth_config, sign_in
from tests.upstream import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
CALLERS = 50


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(access_ttl=120) as server:  # inside the refresh window
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def provider(auth: AuthServer) -> Iterator[Upstream]:
    with Upstream(api_key=auth.valid) as server:
        yield server


def _bearers(provider: Upstream) -> set[str]:
    return {
        r.headers["authorization"]
        for r in provider.requests
        if r.path.endswith("/chat/completions")
    }


def test_fifty_threads_one_refresh(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    client = palyra.Palyra(oauth_config(auth, provider), secrets=vault, home=tmp_path)
    profile = sign_in(client, auth)
    auth.access_ttl = 3600
    auth.fail_next("slow")  # the refresh takes a while: every caller piles up
    barrier = threading.Barrier(CALLERS)
    answers: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            answers.append(client.chat(HI).choices[0].message.content or "")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(answers) == CALLERS
    assert auth.token_requests["refresh_token"] == 1
    fresh = vault.get(f"{profile.id}:access_token")
    assert _bearers(provider) == {f"Bearer {fresh}"}
    client.close()


async def test_fifty_tasks_one_refresh(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    client = palyra.Palyra(oauth_config(auth, provider), secrets=vault, home=tmp_path)
    profile = sign_in(client, auth)
    auth.access_ttl = 3600
    auth.fail_next("slow")
    replies = await asyncio.gather(*(client.achat(HI) for _ in range(CALLERS)))
    assert len(replies) == CALLERS
    assert auth.token_requests["refresh_token"] == 1
    fresh = vault.get(f"{profile.id}:access_token")
    assert _bearers(provider) == {f"Bearer {fresh}"}
    await client.aclose()


async def test_a_refresh_token_refused_fails_every_waiter_once(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    client = palyra.Palyra(
        oauth_config(auth, provider), secrets=palyra.MemorySecretStore(), home=tmp_path
    )
    profile = sign_in(client, auth)
    auth.fail_next("500")

    async def refresh() -> BaseException | None:
        try:
            await client.auth.arefresh(profile.id)
        except palyra.PalyraError as exc:
            return exc
        return None

    outcomes = await asyncio.gather(*(refresh() for _ in range(10)))
    # One request failed; the ones that joined it share its failure, and any
    # that came after the backoff was noted were forced through: none hangs.
    assert all(isinstance(o, palyra.OAuthError) or o is None for o in outcomes)
    assert any(isinstance(o, palyra.OAuthError) for o in outcomes)
    assert auth.token_requests["refresh_token"] <= 10
    await client.aclose()


_CHILD = """
import json, os, sys, time
import keyring
from tests.auth.filekeyring import FileKeyring
keyring.set_keyring(FileKeyring())
import palyra
config, home, go = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
vault = palyra.KeyringSecretStore("palyra-test")
client = palyra.Palyra(config, home=home, secrets=vault)
print("ready", flush=True)
deadline = time.time() + 30
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.001)
reply = client.chat([{"role": "user", "content": "hi"}])
print(reply.choices[0].message.content)
"""


def test_several_processes_one_refresh(
    auth: AuthServer,
    provider: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "keyring.json"
    monkeypatch.setenv(ENV, str(store))
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring(str(store)))
    try:
        config = oauth_config(auth, provider)
        vault = palyra.KeyringSecretStore("palyra-test")
        home = tmp_path / "home"
        with palyra.Palyra(config, secrets=vault, home=home) as client:
            profile = sign_in(client, auth)
            old = vault.get(f"{profile.id}:access_token")
    finally:
        keyring.set_keyring(previous)
    auth.access_ttl = 3600
    auth.fail_next("slow")
    env = {**os.environ, "PYTHONPATH": str(ROOT), ENV: str(store)}
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(config), str(home), str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:  # every child built its client and waits
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    results = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * 4, results
    assert auth.token_requests["refresh_token"] == 1
    bearers = _bearers(provider)
    assert len(bearers) == 1  # all four went out with the one new token
    assert f"Bearer {old}" not in bearers
