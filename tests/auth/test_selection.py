"""Which profile a call uses: the credential order, scopes per agent,
selection (explicit, configured order, least recently used) and cooldowns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.upstream import Upstream, error_reply

HI = [{"role": "user", "content": "hi"}]
KEYS = {
    name: f"sk-{name}-key-0123456789abcdef" for name in ("a", "b", "c", "bot", "env")
}


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream(api_key=lambda key: key in KEYS.values()) as server:
        yield server


OPEN: list[palyra.Palyra] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def make(
    upstream: Upstream,
    tmp_path: Path,
    vault: palyra.SecretStore | None = None,
    **entry: Any,
) -> palyra.Palyra:
    provider = {"id": "up", "kind": "openai", "base_url": upstream.base_url}
    provider.update({"max_retries": 0, **entry})
    config = {"providers": [provider], "models": [{"id": "m", "provider": "up"}]}
    client = palyra.Palyra(
        config, secrets=vault or VAULT, home=tmp_path, sleep=lambda s: None
    )
    OPEN.append(client)
    return client


VAULT = palyra.MemorySecretStore()


def connect(c: palyra.Palyra, name: str, **kw: Any) -> palyra.AuthProfile:
    return c.auth.connect_api_key("up", KEYS[name], name=name, validate=False, **kw)


def used(upstream: Upstream) -> str:
    bearer = upstream.requests[-1].headers["authorization"].removeprefix("Bearer ")
    return next(name for name, key in KEYS.items() if key == bearer)


def test_an_explicit_profile_beats_the_environment(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UP_KEY", KEYS["env"])
    c = make(upstream, tmp_path, auth_profile="up-b", api_key_env="UP_KEY")
    connect(c, "a")
    connect(c, "b")
    c.chat(HI)
    assert used(upstream) == "b"
    plain = make(upstream, tmp_path, api_key_env="UP_KEY")
    plain.chat(HI)
    assert used(upstream) == "env"  # the environment beats connected profiles
    monkeypatch.delenv("UP_KEY")
    plain.chat(HI)
    assert used(upstream) in ("a", "b")  # unset: a connected profile serves


def test_a_named_profile_that_is_missing_is_a_credential_error(
    upstream: Upstream, tmp_path: Path
) -> None:
    c = make(upstream, tmp_path, auth_profile="nobody")
    with pytest.raises(palyra.CredentialError, match="no auth profile 'nobody'"):
        c.chat(HI)
    assert upstream.requests == []


def test_least_recently_used_rotates_and_the_order_comes_first(
    upstream: Upstream, tmp_path: Path
) -> None:
    c = make(upstream, tmp_path)
    for name in ("a", "b", "c"):
        connect(c, name)
    seen = []
    for _ in range(6):
        c.chat(HI)
        seen.append(used(upstream))
    assert sorted(seen[:3]) == ["a", "b", "c"]
    assert seen[3:] == seen[:3]
    ordered = make(upstream, tmp_path, auth_order=["up-c", "up-a"])
    ordered.chat(HI)
    ordered.chat(HI)
    assert used(upstream) == "c"  # always first while it is eligible


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (error_reply(401, "Incorrect API key"), "auth_invalid"),
        (
            error_reply(429, "Rate limit reached", code="rate_limit_exceeded"),
            "rate_limit",
        ),
        (
            error_reply(429, "You exceeded your quota", code="insufficient_quota"),
            "quota",
        ),
        (error_reply(503, "down"), "transient"),
    ],
)
def test_a_failure_cools_the_profile_down_by_kind(
    reply: Any, kind: str, upstream: Upstream, tmp_path: Path
) -> None:
    c = make(upstream, tmp_path, auth_order=["up-a", "up-b"])
    connect(c, "a")
    connect(c, "b")
    upstream.enqueue(reply)
    with pytest.raises(palyra.APIStatusError):
        c.chat(HI)
    assert used(upstream) == "a"
    marks = c.auth._book.marks("up-a")
    assert marks.failure == kind
    c.chat(HI)
    assert used(upstream) == "b"  # a is cooling down
    c.auth._book.marks("up-a").cooldown_until = 0  # the cooldown ends
    c.chat(HI)
    assert used(upstream) == "a"


def test_cooldowns_last_as_long_as_their_kind_says() -> None:
    from palyra._auth.resolve import COOLDOWNS

    assert COOLDOWNS["auth_invalid"] == ("auth_invalid", 300.0)
    assert COOLDOWNS["rate_limited"] == ("rate_limit", 60.0)
    assert COOLDOWNS["quota_exhausted"] == ("quota", 1800.0)
    assert COOLDOWNS["timeout"] == ("transient", 15.0)


def test_when_every_profile_cools_down_the_soonest_serves(
    upstream: Upstream, tmp_path: Path
) -> None:
    c = make(upstream, tmp_path)
    connect(c, "a")
    connect(c, "b")
    book = c.auth._book
    book.cool("up-a", "rate_limit", 60)
    book.cool("up-b", "quota", 1800)
    c.chat(HI)
    assert used(upstream) == "a"
    assert book.marks("up-a").cooldown_until == 0  # served: warm again


def test_agents_see_their_own_and_the_global_profiles(
    upstream: Upstream, tmp_path: Path
) -> None:
    c = make(upstream, tmp_path)
    connect(c, "a")  # global, name "a"
    connect(c, "bot", scope="agent:bot")
    # the agent's profile of the same provider and name overrides the global
    c.auth.connect_api_key(
        "up", KEYS["c"], name="a", scope="agent:other", validate=False
    )
    assert [p.id for p in c.auth.list(agent="bot")] == ["up-a", "up-bot-bot"]
    assert [p.id for p in c.auth.list(agent="other")] == ["up-a-other"]
    assert [p.id for p in c.auth.list(agent="nobody")] == ["up-a"]
    assert len(c.auth.list()) == 3
    for _ in range(4):
        c.chat(HI, agent="other")
        assert used(upstream) == "c"
        c.chat(HI)
        assert used(upstream) == "a"  # no agent: the global ones only
    seen = set()
    for _ in range(4):
        c.bind(agent="bot").chat(HI)
        seen.add(used(upstream))
    assert seen == {"a", "bot"}


def test_a_named_global_profile_is_overridden_for_the_agent(
    upstream: Upstream, tmp_path: Path
) -> None:
    c = make(upstream, tmp_path, auth_profile="up-a")
    connect(c, "a")
    c.auth.connect_api_key(
        "up", KEYS["bot"], name="a", scope="agent:bot", validate=False
    )
    c.chat(HI, agent="bot")
    assert used(upstream) == "bot"
    c.chat(HI, agent="elsewhere")
    assert used(upstream) == "a"
    other = make(upstream, tmp_path, auth_profile="up-a-bot")
    with pytest.raises(palyra.CredentialError, match="belongs to agent 'bot'"):
        other.chat(HI, agent="intruder")


def test_a_secret_gone_from_the_vault_is_missing(
    upstream: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    c = make(upstream, tmp_path, vault)
    c.auth.connect_api_key("up", KEYS["a"], validate=False)
    vault.delete("up-default:api_key")
    assert [p.health for p in c.auth.health()] == ["missing"]
    with pytest.raises(palyra.CredentialError, match="no api_key in the vault"):
        c.chat(HI)


def test_nothing_is_read_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring

    def refuse(*args: object) -> None:
        raise AssertionError("the keyring was asked")

    monkeypatch.setattr(keyring, "get_password", refuse)
    monkeypatch.setattr(keyring, "get_keyring", refuse)
    home = tmp_path / "not-yet"
    config = {
        "providers": [{"id": "up", "kind": "openai", "auth_profile": "work"}],
        "models": [{"id": "m", "provider": "up"}],
    }
    client = palyra.Palyra(config, home=home)
    assert repr(client.auth) == f"Auth(home={str(home)!r})"
    assert not home.exists()
    assert not os.path.exists(tmp_path / "not-yet")
