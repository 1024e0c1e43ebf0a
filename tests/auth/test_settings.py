"""Smaller promises: the refresh window is configurable, openai gets its
preset, generated ids never take over another profile, a stored credential
drops the fields it lacks, a busy sign-in port is a typed error."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import palyra
from palyra._auth import AuthProfile

PROVIDER = {"id": "up", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}


def _client(tmp_path: Path, **config: Any) -> palyra.Palyra:
    data = {
        "providers": [PROVIDER],
        "models": [{"id": "m", "provider": "up"}],
        **config,
    }
    return palyra.Palyra(data, secrets=palyra.MemorySecretStore(), home=tmp_path)


def _oauth(client: palyra.Palyra, minutes: float, **secrets: str) -> AuthProfile:
    now = datetime.now(UTC).replace(microsecond=0)
    profile = AuthProfile(
        id="p",
        provider="up",
        name="p",
        kind="oauth",
        created_at=now,
        updated_at=now,
        token_endpoint="http://127.0.0.1:9/token",
        expires_at=now + timedelta(minutes=minutes),
    )
    return client.auth._save(profile, secrets or {"access_token": "at-0123456789"})


@pytest.mark.parametrize(("window", "owed"), [(None, False), (900, True)])
def test_the_refresh_window_is_configurable(
    window: float | None, owed: bool, tmp_path: Path
) -> None:
    config = {} if window is None else {"auth": {"refresh_window": window}}
    client = _client(tmp_path, **config)
    _oauth(client, minutes=10)  # outside 5 minutes, inside 15
    gate = client._gate
    assert gate is not None
    book = client.auth._book
    book.load()
    book.prefetch(None)
    assert (gate.ahead(None) is not None) is owed


def test_a_bad_refresh_window_is_a_config_error() -> None:
    with pytest.raises(palyra.ConfigError, match=r"auth\.refresh_window"):
        palyra.PalyraConfig.from_dict({"auth": {"refresh_window": 0}})


def test_openai_without_an_oauth_table_gets_the_preset(tmp_path: Path) -> None:
    client = palyra.Palyra(None, secrets=palyra.MemorySecretStore(), home=tmp_path)
    attempt = client.auth.start_oauth(
        "openai", client_id="app_1", redirect_uri="http://127.0.0.1:1455/auth/callback"
    )
    assert attempt.authorize_url.startswith("https://auth.openai.com/authorize?")
    assert "audience=https%3A%2F%2Fapi.openai.com%2Fv1" in attempt.authorize_url
    with pytest.raises(palyra.InvalidRequestError, match="client_id"):
        client.auth.start_oauth("openai", redirect_uri="http://127.0.0.1:1455/cb")


def test_generated_ids_never_take_over_another_profile(tmp_path: Path) -> None:
    client = _client(tmp_path)
    first = client.auth.connect_api_key(
        "up", "sk-first-0123456789", name="work x", validate=False
    )
    second = client.auth.connect_api_key(
        "up", "sk-second-0123456789", name="work-x", validate=False
    )
    again = client.auth.connect_api_key(
        "up", "sk-third-0123456789", name="Work X", validate=False
    )
    assert (first.id, second.id, again.id) == ("up-work-x", "up-work-x-2", "up-work-x")
    assert {p.name for p in client.auth.list()} == {"Work X", "work-x"}


def test_a_credential_without_a_refresh_token_drops_the_old_one(tmp_path: Path) -> None:
    client = _client(tmp_path)
    vault = client.auth._book.vault
    _oauth(
        client, 60, access_token="at-one-0123456789", refresh_token="rt-one-0123456789"
    )
    assert vault.get("p:refresh_token") == "rt-one-0123456789"
    _oauth(client, 60, access_token="at-two-0123456789")
    assert vault.get("p:refresh_token") is None  # never used for the new sign-in
    assert vault.get("p:access_token") == "at-two-0123456789"


def test_a_busy_sign_in_port_is_a_typed_error(tmp_path: Path) -> None:
    oauth = {
        "client_id": "c",
        "authorize_url": "http://127.0.0.1:9/authorize",
        "token_url": "http://127.0.0.1:9/token",
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = {
            "providers": [
                {
                    **PROVIDER,
                    "oauth": {**oauth, "redirect_uri": f"http://127.0.0.1:{port}/cb"},
                }
            ],
            "models": [{"id": "m", "provider": "up"}],
        }
        client = palyra.Palyra(
            config, secrets=palyra.MemorySecretStore(), home=tmp_path
        )
        with pytest.raises(
            palyra.InvalidRequestError, match=f"cannot listen on 127.0.0.1:{port}"
        ):
            client.auth.login_oauth("up", open_browser=False, timeout=1)


def test_an_anthropic_provider_with_oauth_sends_bearer() -> None:
    oauth = {
        "client_id": "c",
        "authorize_url": "https://auth.example/authorize",
        "token_url": "https://auth.example/token",
    }
    with_oauth = palyra.ProviderConfig(id="claude", kind="anthropic", oauth=oauth)
    assert with_oauth.effective_auth_header == "bearer"
    keyed = palyra.ProviderConfig(id="claude", kind="anthropic")
    assert keyed.effective_auth_header == "x-api-key"
    told = palyra.ProviderConfig(
        id="claude", kind="anthropic", oauth=oauth, auth_header="x-api-key"
    )
    assert told.effective_auth_header == "x-api-key"
