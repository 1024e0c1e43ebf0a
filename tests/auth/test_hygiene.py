"""Secrets never leak: a recognisable key and real OAuth tokens go through
every auth path (connect, a refused key, OAuth, refresh, a failed refresh,
revoke), with every logger at DEBUG, and appear in no file under home, no log
record, no repr or str, and no exception message or chain."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.auth.authserver import AuthServer
from tests.auth.test_oauth_client import HI, oauth_config
from tests.upstream import Reply, Upstream

SECRET = "sk-HYGIENE-never-anywhere-0123456789"
pytestmark = pytest.mark.e2e


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _texts(exc: BaseException) -> str:
    parts = ["".join(traceback.format_exception(exc))]
    for link in _chain(exc):
        parts += [str(link), repr(link), repr(getattr(link, "error_description", ""))]
        parts += [repr(getattr(link, "body", "")), repr(getattr(link, "headers", ""))]
    return "\n".join(parts)


def test_no_secret_leaks_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: palyra, httpx, httpcore
    seen: list[str] = []  # every str/repr and exception text made on the way
    home = tmp_path / "home"
    vault = palyra.MemorySecretStore()
    with (
        AuthServer(access_ttl=120) as auth,
        Upstream(api_key=auth.valid) as provider,
        Upstream() as keyed,
    ):
        config = oauth_config(auth, provider)
        config["providers"].append(
            {"id": "keyed", "kind": "openai", "base_url": keyed.base_url}
        )
        client = palyra.Palyra(config, secrets=vault, home=home)
        # a refused key, echoed back by the provider as OpenAI does
        keyed.enqueue(
            Reply(
                status=401,
                json={"error": {"message": f"Incorrect API key provided: {SECRET}"}},
            )
        )
        with pytest.raises(palyra.AuthenticationError) as refused:
            client.auth.connect_api_key("keyed", SECRET)
        seen.append(_texts(refused.value))
        profile = client.auth.connect_api_key("keyed", SECRET, validate=False)
        seen += [repr(profile), str(profile), repr(client), repr(client.auth)]
        # OAuth: sign in, refresh (due at once), a failed refresh, revoke
        attempt = client.auth.start_oauth("up", profile_id="oauth")
        seen += [repr(attempt), str(attempt)]
        signed = client.auth.complete_oauth(auth.approve(attempt.authorize_url))
        tokens = {
            vault.get("oauth:access_token") or "",
            vault.get("oauth:refresh_token") or "",
            attempt.code_verifier,
        }
        client.chat(HI, model="m")
        auth.fail_next("500")
        with pytest.raises(palyra.OAuthError) as failed:
            client.auth.refresh("oauth")
        seen.append(_texts(failed.value))
        tokens |= {
            vault.get("oauth:access_token") or "",
            vault.get("oauth:refresh_token") or "",
        }
        seen += [repr(p) for p in client.auth.list()] + [repr(signed)]
        seen += [repr(p) for p in client.auth.health()]
        refreshed = client.auth.refresh("oauth")
        tokens |= {
            vault.get("oauth:access_token") or "",
            vault.get("oauth:refresh_token") or "",
        }
        seen.append(repr(refreshed))
        client.auth.revoke("oauth")
        client.close()
    secrets = {SECRET} | {t for t in tokens if len(t) >= 8}
    assert len(secrets) >= 5
    files = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert home / "auth_profiles.json" in files
    # The authorization server's own logs are the server's business (authlib
    # logs the tokens it issues); palyra's, httpx's and httpcore's are ours.
    records = [
        r.getMessage() + repr(r.args)
        for r in caplog.records
        if not r.name.startswith(("authlib", "werkzeug"))
    ]
    assert any(r.name.startswith("httpx") for r in caplog.records)
    for secret in secrets:
        for path, data in files.items():
            assert secret.encode() not in data, path
        for text in seen + records:
            assert secret not in text


def test_debug_logs_of_a_connect_hold_no_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with Upstream(api_key=SECRET) as up:
        config: dict[str, Any] = {
            "providers": [{"id": "up", "kind": "openai", "base_url": up.base_url}],
            "models": [{"id": "m", "provider": "up"}],
        }
        with palyra.Palyra(
            config, secrets=palyra.MemorySecretStore(), home=tmp_path
        ) as c:
            c.auth.connect_api_key("up", SECRET)
            c.chat(HI)
    assert any("models" in r.getMessage() for r in caplog.records)  # httpx logged it
    assert all(SECRET not in r.getMessage() for r in caplog.records)
