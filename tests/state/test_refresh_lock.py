"""OAuth refresh single-flight across processes on a real Redis: the lock
excludes across processes, a dead holder's lock expires, a wait ends with a
typed error, a Redis that is down leaves the file lock alone in charge, and
processes whose file locks do not meet (as on a network filesystem) still
send one refresh between them, against a real authorization server."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

import palyra
from palyra._state import RedisState
from tests.auth.authserver import AuthServer
from tests.auth.filekeyring import ENV, FileKeyring
from tests.auth.test_oauth_client import HI, oauth_config, sign_in
from tests.servers import free_port
from tests.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]

_HOLDER = """
import json, sys, time
from palyra._state import RedisState
from palyra._state import locks
locks.MARGIN_S = float(sys.argv[3])
held = RedisState(sys.argv[1]).refresh_locks()
with held.hold("x", 20):
    start = time.time()
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    end = time.time()
print(json.dumps([start, end]), flush=True)
"""


def _holder(url: str, seconds: float, margin: float = 5.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(seconds), str(margin)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_the_lock_excludes_across_processes(redis_url: str) -> None:
    children = [_holder(redis_url, 0.2) for _ in range(3)]
    spans = []
    for child in children:
        out, _ = child.communicate(timeout=30)
        spans.append(json.loads(out.splitlines()[-1]))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # one holder at a time


def test_a_killed_holders_lock_expires(redis_url: str) -> None:
    child = _holder(redis_url, 60, margin=0.5)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "holding"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    locks = RedisState(redis_url).refresh_locks()
    # Its lock lives 20.5 s (its wait and the margin): a short wait fails,
    # typed, naming the lock and where, never a password.
    with pytest.raises(palyra.AuthProfileError) as info, locks.hold("x", 0.1):
        pass
    assert "'x'" in str(info.value)
    assert "127.0.0.1" in str(info.value)
    import redis

    key = "palyra:lock:x"
    ttl = redis.Redis.from_url(redis_url).pttl(key)
    assert 0 < ttl <= 20_500
    redis.Redis.from_url(redis_url).pexpire(key, 50)  # as if 20 s went by
    with locks.hold("x", 2):
        pass
    locks.link.close()


def test_a_redis_that_is_down_leaves_the_file_lock_in_charge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    locks = RedisState(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.2)
    held = locks.refresh_locks()
    with caplog.at_level(logging.WARNING, logger="palyra"), held.hold("x", 1):
        pass
    assert held.unguarded == 1
    assert "file lock alone" in caplog.text


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(access_ttl=120) as server:  # inside the refresh window
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def provider(auth: AuthServer) -> Iterator[Upstream]:
    with Upstream(api_key=auth.valid) as server:
        yield server


def test_a_refresh_waits_for_the_lock_on_redis(
    auth: AuthServer, provider: Upstream, tmp_path: Path, redis_url: str
) -> None:
    config = {
        **oauth_config(auth, provider),
        "state": {"backend": "redis", "url": redis_url},
    }
    vault = palyra.MemorySecretStore()
    client = palyra.Palyra(config, secrets=vault, home=tmp_path)
    profile = sign_in(client, auth)
    auth.access_ttl = 3600
    other = RedisState(redis_url).refresh_locks()  # another host refreshing
    taken, let_go = threading.Event(), threading.Event()

    def hold() -> None:
        with other.hold(f"refresh:{profile.id}", 5):
            taken.set()
            let_go.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    threading.Timer(0.5, let_go.set).start()
    started = time.monotonic()
    client.chat(HI)  # owed a refresh: waits for the lock, then refreshes
    assert time.monotonic() - started >= 0.45
    holder.join(5)
    assert auth.token_requests["refresh_token"] == 1
    client.close()


_CHILD = """
import json, os, sys, time
from contextlib import contextmanager
import keyring
from tests.auth.filekeyring import FileKeyring
keyring.set_keyring(FileKeyring())
import palyra
from palyra._auth import store

@contextmanager
def no_lock(path, timeout):  # a filesystem whose locks do not work
    yield

store.hold = no_lock
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


def test_processes_whose_file_locks_do_not_meet_refresh_once(
    auth: AuthServer,
    provider: Upstream,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "keyring.json"
    monkeypatch.setenv(ENV, str(store))
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring(str(store)))
    config = {
        **oauth_config(auth, provider),
        "state": {"backend": "redis", "url": redis_url},
    }
    try:
        vault = palyra.KeyringSecretStore("palyra-test")
        home = tmp_path / "home"
        with palyra.Palyra(config, secrets=vault, home=home) as client:
            profile = sign_in(client, auth)
            old = vault.get(f"{profile.id}:access_token")
    finally:
        keyring.set_keyring(previous)
    auth.access_ttl = 3600
    auth.fail_next("slow")  # the refresh takes a while: all four want it
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
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    results = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * 4, results
    assert auth.token_requests["refresh_token"] == 1
    bearers = {
        r.headers["authorization"]
        for r in provider.requests
        if r.path.endswith("/chat/completions")
    }
    assert len(bearers) == 1
    assert f"Bearer {old}" not in bearers


def test_a_release_that_meets_a_stalled_redis_is_tried_again(redis_url: str) -> None:
    import redis

    a = RedisState(redis_url, timeout=0.3).refresh_locks()
    b = RedisState(redis_url).refresh_locks()
    with a.hold("refresh:p", 10):
        redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", "600", "ALL")
    # A's release met the stall and went again: B gets the lock at once.
    started = time.monotonic()
    with b.hold("refresh:p", 3):
        pass
    assert time.monotonic() - started < 1.5
    assert redis.Redis.from_url(redis_url).exists("palyra:lock:refresh:p") == 0
    a.link.close()
    b.link.close()
