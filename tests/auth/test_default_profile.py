"""The default profile per provider (`Auth.set_default`): selected first,
one per provider and scope, kept in the profile file for every process, kept
across a reconnect, and ended by revocation or `clear_default`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.upstream import Upstream

HI = [{"role": "user", "content": "hi"}]
KEYS = {name: f"sk-{name}-key-0123456789abcdef" for name in "abcd"}
OPEN: list[palyra.Palyra] = []


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream(api_key=lambda key: key in KEYS.values()) as server:
        yield server


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def make(
    upstream: Upstream, home: Path, vault: palyra.SecretStore, **entry: Any
) -> palyra.Palyra:
    provider = {"id": "up", "kind": "openai", "base_url": upstream.base_url}
    provider.update({"max_retries": 0, **entry})
    config = {"providers": [provider], "models": [{"id": "m", "provider": "up"}]}
    client = palyra.Palyra(config, secrets=vault, home=home, sleep=lambda s: None)
    OPEN.append(client)
    return client


def connect(c: palyra.Palyra, name: str, **kw: Any) -> palyra.AuthProfile:
    return c.auth.connect_api_key("up", KEYS[name], name=name, validate=False, **kw)


def used(upstream: Upstream) -> str:
    bearer = upstream.requests[-1].headers["authorization"].removeprefix("Bearer ")
    return next(name for name, key in KEYS.items() if key == bearer)


def defaults_in_file(home: Path) -> list[str]:
    document = json.loads((home / "auth_profiles.json").read_text())
    return [r["id"] for r in document["profiles"] if r.get("default")]


def test_the_default_serves_every_call_ahead_of_the_order(
    upstream: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    c = make(upstream, tmp_path, vault, auth_order=["up-a"])
    for name in "abc":
        connect(c, name)
    assert not any(p.default for p in c.auth.list())
    chosen = c.auth.set_default("up-c")
    assert chosen.default
    assert chosen.id == "up-c"
    for _ in range(3):
        c.chat(HI)
        assert used(upstream) == "c"
    assert defaults_in_file(tmp_path) == ["up-c"]
    # another client of the same home (another process, as far as the file
    # goes) selects it too
    other = make(upstream, tmp_path, vault)
    other.chat(HI)
    assert used(upstream) == "c"
    # one default per provider and scope: the new one replaces the old
    c.auth.set_default("up-b")
    assert defaults_in_file(tmp_path) == ["up-b"]
    assert [p.id for p in c.auth.list() if p.default] == ["up-b"]
    c.chat(HI)
    assert used(upstream) == "b"
    c.auth.clear_default("up-b")
    c.chat(HI)
    assert used(upstream) == "a"  # back to the configured order
    assert defaults_in_file(tmp_path) == []


def test_a_default_cooling_down_gives_way_and_revoking_it_ends_it(
    upstream: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    c = make(upstream, tmp_path, vault)
    connect(c, "a")
    connect(c, "b")
    c.auth.set_default("up-b")
    c.auth._book.cool("up-b", "rate_limit", 60.0)
    c.chat(HI)
    assert used(upstream) == "a"
    c.auth._book.warm("up-b")  # its cooldown ends
    c.chat(HI)
    assert used(upstream) == "b"
    c.auth.revoke("up-b")
    c.chat(HI)
    assert used(upstream) == "a"
    assert defaults_in_file(tmp_path) == []


def test_an_agents_default_comes_before_the_global_one(
    upstream: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    c = make(upstream, tmp_path, vault)
    connect(c, "a")
    connect(c, "b")
    connect(c, "c", scope="agent:bot")
    c.auth.set_default("up-a")
    bot = c.auth.set_default("up-c-bot")
    assert bot.scope == "agent:bot"
    # two scopes, two defaults: setting the agent's left the global one
    assert sorted(defaults_in_file(tmp_path)) == ["up-a", "up-c-bot"]
    c.chat(HI, agent="bot")
    assert used(upstream) == "c"
    c.chat(HI, agent="other")
    assert used(upstream) == "a"
    c.chat(HI)
    assert used(upstream) == "a"


def test_the_default_survives_a_reconnect_and_a_write_from_a_stale_reading(
    upstream: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    first = make(upstream, tmp_path, vault)
    connect(first, "a")
    connect(first, "b")
    stale = make(upstream, tmp_path, vault)
    stale.auth.list()  # it has read the file before the default was set
    first.auth.set_default("up-b")
    # the stale client writes the profile again (a rotated key): the file's
    # default is kept, not undone by what that client had read
    stale.auth.connect_api_key(
        "up", KEYS["d"], name="b", validate=False, profile_id="up-b"
    )
    assert defaults_in_file(tmp_path) == ["up-b"]
    assert stale.auth.get("up-b").default


def test_unknown_and_malformed_ids_are_named(
    upstream: Upstream, tmp_path: Path
) -> None:
    c = make(upstream, tmp_path, palyra.MemorySecretStore())
    with pytest.raises(palyra.AuthProfileError, match="no auth profile 'up-x'"):
        c.auth.set_default("up-x")
    with pytest.raises(palyra.InvalidRequestError, match="profile_id"):
        c.auth.set_default("Not An Id!")
    assert not (tmp_path / "auth_profiles.json").exists()


def test_threads_setting_defaults_leave_exactly_one(
    upstream: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    c = make(upstream, tmp_path, vault)
    for name in "abcd":
        connect(c, name)
    clients = [make(upstream, tmp_path, vault) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    errors: list[BaseException] = []

    def flip(i: int, client: palyra.Palyra) -> None:
        try:
            barrier.wait(5)
            for n in range(10):
                client.auth.set_default(f"up-{'abcd'[(i + n) % 4]}")
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=flip, args=(i, x)) for i, x in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(defaults_in_file(tmp_path)) == 1


@pytest.mark.anyio
async def test_async_set_and_clear(upstream: Upstream, tmp_path: Path) -> None:
    vault = palyra.MemorySecretStore()
    c = make(upstream, tmp_path, vault)
    connect(c, "a")
    connect(c, "b")
    assert (await c.auth.aset_default("up-a")).default
    await c.achat(HI)
    assert used(upstream) == "a"
    assert not (await c.auth.aclear_default("up-a")).default
    await c.aclose()
