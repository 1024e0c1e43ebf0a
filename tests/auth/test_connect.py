"""API-key connect against a real loopback server: validated before anything
is stored, every refusal typed, nothing half-stored, used by calls at once."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import DRIVERS, chat
from tests.upstream import Reply, Upstream, error_reply

pytestmark = pytest.mark.anyio


def config(upstream: Upstream, **provider: Any) -> dict[str, Any]:
    entry = {"id": "up", "kind": "openai", "base_url": upstream.base_url}
    entry.update(provider)
    return {
        "providers": [entry],
        "models": [{"id": "gpt-4o-mini", "provider": "up"}],
    }


def client(
    upstream: Upstream,
    tmp_path: Path,
    vault: palyra.SecretStore | None = None,
    **kw: Any,
) -> palyra.Palyra:
    return palyra.Palyra(
        config(upstream, **kw),
        secrets=vault or palyra.MemorySecretStore(),
        home=tmp_path,
        sleep=lambda s: None,
    )


def stored(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "auth_profiles.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_valid_key_is_checked_then_kept_and_used(
    driver: str, upstream: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    with client(upstream, tmp_path, vault) as c:
        connect = (
            c.auth.connect_api_key if driver == "sync" else c.auth.aconnect_api_key
        )
        result = connect("up", FAKE_KEY, name="work")
        profile = result if driver == "sync" else await result
        assert (profile.id, profile.kind, profile.health) == (
            "up-work",
            "api_key",
            "static",
        )
        check = upstream.requests[0]
        assert (check.method, check.path) == ("GET", "/v1/models")
        assert check.headers["authorization"] == f"Bearer {FAKE_KEY}"
        assert vault.get("up-work:api_key") == FAKE_KEY
        text = (tmp_path / "auth_profiles.json").read_text()
        assert FAKE_KEY not in text
        assert '"up-work"' in text
        reply = await chat(c, driver, [{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        assert upstream.requests[-1].headers["authorization"] == f"Bearer {FAKE_KEY}"
        if driver == "async":
            await c.aclose()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (error_reply(401, "Incorrect API key provided"), palyra.AuthenticationError),
        (error_reply(403, "not allowed"), palyra.PermissionDeniedError),
        (error_reply(429, "slow down", code="rate_limit"), palyra.RateLimitError),
        (error_reply(503, "down"), palyra.InternalServerError),
        (
            Reply(status=302, headers={"location": "http://127.0.0.1:9/x"}),
            palyra.APIStatusError,
        ),
    ],
)
def test_a_refusal_is_typed_and_nothing_is_stored(
    reply: Reply, error: type[Exception], tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    with Upstream() as up, client(up, tmp_path, vault) as c:
        up.enqueue(reply)
        with pytest.raises(error) as info:
            c.auth.connect_api_key("up", FAKE_KEY)
        assert len(up.requests) == 1  # no retry on a status, no redirect followed
    assert FAKE_KEY not in str(info.value)
    assert FAKE_KEY not in repr(info.value)
    assert repr(vault) == "MemorySecretStore(0 secrets)"
    assert stored(tmp_path) == {}


def test_a_wrong_key_is_refused_by_the_server(
    upstream: Upstream, tmp_path: Path
) -> None:
    with client(upstream, tmp_path) as c, pytest.raises(palyra.AuthenticationError):
        c.auth.connect_api_key("up", "sk-wrong-0123456789")
    assert stored(tmp_path) == {}


def test_no_answer_is_retried_briefly_then_typed(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody listens
    cfg = {
        "providers": [
            {"id": "up", "kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}
        ],
        "models": [{"id": "m", "provider": "up"}],
    }
    pauses: list[float] = []
    vault = palyra.MemorySecretStore()
    c = palyra.Palyra(cfg, secrets=vault, home=tmp_path, sleep=pauses.append)
    with c, pytest.raises(palyra.APIConnectionError, match="nothing was stored"):
        c.auth.connect_api_key("up", FAKE_KEY, timeout=5)
    assert pauses == [0.1, 0.1]  # three tries in all
    assert stored(tmp_path) == {}


def test_the_network_guard_applies(tmp_path: Path) -> None:
    cfg = {
        "providers": [
            {"id": "up", "kind": "openai", "base_url": "https://models.example/v1"}
        ],
        "models": [{"id": "m", "provider": "up"}],
    }
    with (
        palyra.Palyra(
            cfg,
            secrets=palyra.MemorySecretStore(),
            home=tmp_path,
            resolver=lambda h, p: ["10.0.0.7"],
        ) as c,
        pytest.raises(palyra.BlockedAddressError),
    ):
        c.auth.connect_api_key("up", FAKE_KEY)
    assert stored(tmp_path) == {}


def test_a_failed_file_write_undoes_the_vault_write(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from palyra._auth.store import ProfileFile

    vault = palyra.MemorySecretStore()
    vault.set("up-default:api_key", "sk-the-previous-key-0000")

    def broken(self: object, change: object) -> object:
        raise palyra.AuthProfileError("disk full (test)")

    monkeypatch.setattr(ProfileFile, "update", broken)
    with client(upstream, tmp_path, vault) as c, pytest.raises(palyra.AuthProfileError):
        c.auth.connect_api_key("up", FAKE_KEY)
    assert vault.get("up-default:api_key") == "sk-the-previous-key-0000"


def test_connecting_again_rotates_the_key_for_live_clients(tmp_path: Path) -> None:
    vault = palyra.MemorySecretStore()
    with Upstream(api_key=FAKE_KEY) as up:
        user = client(up, tmp_path, vault)
        first = user.auth.connect_api_key("up", FAKE_KEY)
        chat_reply = user.chat([{"role": "user", "content": "hi"}])
        assert chat_reply.choices[0].message.content
        up.api_key = FAKE_KEY + "NEW"
        admin = client(up, tmp_path, vault)
        second = admin.auth.connect_api_key("up", FAKE_KEY + "NEW")
        assert second.created_at == first.created_at
        assert second.updated_at >= first.updated_at
        user.chat([{"role": "user", "content": "hi"}])  # the rotated key, at once
        assert up.requests[-1].headers["authorization"] == f"Bearer {FAKE_KEY}NEW"
        user.close()
        admin.close()


def test_anthropic_keys_are_checked_with_x_api_key(
    upstream: Upstream, tmp_path: Path
) -> None:
    cfg = {
        "providers": [
            {"id": "claude", "kind": "anthropic", "base_url": upstream.origin}
        ],
        "models": [{"id": "claude-x", "provider": "claude"}],
    }
    with palyra.Palyra(cfg, secrets=palyra.MemorySecretStore(), home=tmp_path) as c:
        profile = c.auth.connect_api_key("claude", FAKE_KEY)
    check = upstream.requests[0]
    assert check.path.startswith("/v1/models")
    assert check.headers["x-api-key"] == FAKE_KEY
    assert check.headers["anthropic-version"] == "2023-06-01"
    assert profile.provider == "claude"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "nope"}, "provider: no provider 'nope'"),
        ({"key": ""}, "key: is empty"),
        ({"key": "sk-a\nb"}, "key: must be visible ASCII"),
        ({"profile_id": "Bad Id"}, "profile_id: "),
        ({"scope": "team:x"}, "scope: "),
        ({"name": ""}, "name: "),
    ],
)
def test_bad_input_is_named_and_nothing_is_sent(
    kwargs: dict[str, Any], message: str, upstream: Upstream, tmp_path: Path
) -> None:
    args = {"provider": "up", "key": FAKE_KEY, **kwargs}
    with (
        client(upstream, tmp_path) as c,
        pytest.raises(palyra.InvalidRequestError) as info,
    ):
        c.auth.connect_api_key(args.pop("provider"), args.pop("key"), **args)
    assert message in str(info.value)
    assert upstream.requests == []
    assert stored(tmp_path) == {}


def test_without_validation_nothing_is_sent(upstream: Upstream, tmp_path: Path) -> None:
    with client(upstream, tmp_path) as c:
        profile = c.auth.connect_api_key(
            "up", FAKE_KEY, validate=False, scope="agent:bot"
        )
    assert upstream.requests == []
    assert (profile.id, profile.scope) == ("up-default-bot", "agent:bot")
