"""client.auth's OAuth, end to end against a real authorization server
(authlib, on 127.0.0.1) and a real loopback provider that accepts only the
tokens that server issued: sign in, call, expire, refresh, revoke."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import palyra
from tests.auth.authserver import AuthServer
from tests.helpers import DRIVERS
from tests.upstream import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

REDIRECT = "http://127.0.0.1:53682/callback"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def provider(auth: AuthServer) -> Iterator[Upstream]:
    with Upstream(api_key=auth.valid) as server:
        yield server


def oauth_config(auth: AuthServer, upstream: Upstream, **entry: Any) -> dict[str, Any]:
    provider = {
        "id": "up",
        "kind": "openai",
        "base_url": upstream.base_url,
        "max_retries": 0,
        "oauth": {
            "client_id": auth.client_id,
            "authorize_url": auth.authorize_url,
            "token_url": auth.token_url,
            "revocation_url": auth.revocation_url,
            "scopes": ["openid", "offline_access"],
            "redirect_uri": REDIRECT,
        },
        **entry,
    }
    return {"providers": [provider], "models": [{"id": "m", "provider": "up"}]}


@pytest.fixture
def vault() -> palyra.MemorySecretStore:
    return palyra.MemorySecretStore()


@pytest.fixture
def client(
    auth: AuthServer, provider: Upstream, vault: palyra.SecretStore, tmp_path: Path
) -> Iterator[palyra.Palyra]:
    with palyra.Palyra(oauth_config(auth, provider), secrets=vault, home=tmp_path) as c:
        yield c


def sign_in(client: palyra.Palyra, auth: AuthServer, **kw: Any) -> palyra.AuthProfile:
    attempt = client.auth.start_oauth("up", **kw)
    return client.auth.complete_oauth(auth.approve(attempt.authorize_url))


@pytest.fixture(params=["memory", "secret-service"])
def any_vault(request: pytest.FixtureRequest) -> Iterator[palyra.SecretStore]:
    """Memory, and the real keyring with the Linux Secret Service where one
    runs (`.ci/run` starts one)."""
    if request.param == "memory":
        yield palyra.MemorySecretStore()
        return
    import keyring

    from tests.auth.test_vault import _secret_service

    previous = keyring.get_keyring()
    keyring.set_keyring(_secret_service())
    store = palyra.KeyringSecretStore(service="palyra-test-oauth")
    try:
        yield store
    finally:
        for field in ("access_token", "refresh_token"):
            store.delete(f"work:{field}")
        keyring.set_keyring(previous)


def test_the_whole_flow(
    auth: AuthServer, provider: Upstream, any_vault: palyra.SecretStore, tmp_path: Path
) -> None:
    vault = any_vault
    client = palyra.Palyra(oauth_config(auth, provider), secrets=vault, home=tmp_path)
    attempt = client.auth.start_oauth("up", profile_id="work")
    assert attempt.redirect_uri == REDIRECT
    assert attempt.state not in (attempt.id, "")
    assert "code_challenge_method=S256" in attempt.authorize_url
    # 1-2: the browser consents; the callback is exchanged for tokens
    profile = client.auth.complete_oauth(auth.approve(attempt.authorize_url))
    assert (profile.id, profile.kind, profile.health) == ("work", "oauth", "ok")
    assert profile.token_endpoint == auth.token_url
    assert profile.client_id == auth.client_id
    assert profile.scopes == ("openid", "offline_access")
    assert profile.expires_at is not None
    access = vault.get("work:access_token")
    refresh = vault.get("work:refresh_token")
    assert access
    assert refresh
    assert auth.valid(access)
    text = (tmp_path / "auth_profiles.json").read_text()
    assert access not in text
    assert refresh not in text
    # 3: the token works against the provider (selected: no profile named)
    assert client.chat(HI).choices[0].message.content
    assert provider.requests[-1].headers["authorization"] == f"Bearer {access}"
    # 4: expired, refused with 401, refreshed once (rotated), sent again
    auth.expire_access_tokens()
    assert client.chat(HI).choices[0].message.content
    assert auth.token_requests["refresh_token"] == 1
    assert vault.get("work:refresh_token") not in (None, refresh)
    new_access = vault.get("work:access_token")
    assert new_access != access
    assert provider.requests[-1].headers["authorization"] == f"Bearer {new_access}"
    # 5: revoked at the server, then the secrets and the profile
    client.auth.revoke("work")
    assert auth.revocations
    assert not auth.valid(new_access or "")
    assert vault.get("work:access_token") is None
    assert vault.get("work:refresh_token") is None
    assert client.auth.list() == []
    with pytest.raises(palyra.CredentialError):
        client.chat(HI)
    client.close()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_login_oauth_listens_on_loopback_and_always_closes(
    driver: str, auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    pages: list[httpx.Response] = []
    visits: list[threading.Thread] = []

    def browser(url: str) -> None:
        def visit() -> None:
            callback = auth.approve(url)
            pages.append(httpx.get(callback, timeout=10))

        visits.append(threading.Thread(target=visit, daemon=True))
        visits[0].start()

    config = oauth_config(auth, provider)
    del config["providers"][0]["oauth"]["redirect_uri"]  # any free port
    c = palyra.Palyra(config, secrets=palyra.MemorySecretStore(), home=tmp_path)
    if driver == "sync":
        profile = c.auth.login_oauth("up", open_browser=browser, timeout=20)
    else:
        profile = await c.auth.alogin_oauth("up", open_browser=browser, timeout=20)
    assert (profile.kind, profile.health) == ("oauth", "ok")
    visits[0].join(10)  # the browser reads the page after palyra answered it
    assert pages[0].status_code == 200
    assert "signed in" in pages[0].text
    tokens = [c.auth._book.vault.get(f"{profile.id}:{f}") for f in profile.secret_refs]
    assert all(t and t not in pages[0].text for t in tokens)
    await c.aclose()
    with pytest.raises(httpx.ConnectError):
        httpx.get(pages[0].url, timeout=2)  # noqa: ASYNC210 - the listener is gone


def test_login_times_out_and_closes_the_listener(client: palyra.Palyra) -> None:
    seen: list[str] = []
    with pytest.raises(palyra.APITimeoutError, match="no OAuth callback"):
        client.auth.login_oauth("up", open_browser=seen.append, timeout=0.3)
    redirect = httpx.URL(seen[0]).params["redirect_uri"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(redirect, timeout=2)


def test_the_attempt_is_single_use_and_its_state_must_match(
    client: palyra.Palyra, auth: AuthServer
) -> None:
    attempt = client.auth.start_oauth("up")
    callback = auth.approve(attempt.authorize_url)
    wrong = httpx.URL(callback).copy_set_param("state", "x" * 43)
    with pytest.raises(palyra.OAuthError, match="unknown state"):
        client.auth.complete_oauth(str(wrong))
    client.auth.complete_oauth(callback)
    with pytest.raises(palyra.OAuthError, match="already completed"):
        client.auth.complete_oauth(callback)


def test_an_expired_attempt_is_refused(
    client: palyra.Palyra, auth: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import palyra._auth.oauth as oauth

    attempt = client.auth.start_oauth("up")
    callback = auth.approve(attempt.authorize_url)
    real = oauth.time.time
    monkeypatch.setattr(oauth.time, "time", lambda: real() + 601)
    with pytest.raises(palyra.OAuthError, match="expired"):
        client.auth.complete_oauth(callback)
    assert auth.token_requests["authorization_code"] == 0


def test_an_error_callback_sends_no_token_request(
    client: palyra.Palyra, auth: AuthServer
) -> None:
    attempt = client.auth.start_oauth("up")
    with pytest.raises(palyra.OAuthError) as info:
        client.auth.complete_oauth(auth.approve(attempt.authorize_url, deny=True))
    assert info.value.error == "access_denied"
    assert auth.token_requests["authorization_code"] == 0
    assert client.auth.list() == []


def test_a_reused_code_and_a_wrong_verifier_are_refused(
    client: palyra.Palyra, auth: AuthServer, tmp_path: Path
) -> None:
    first = client.auth.start_oauth("up")
    used = httpx.URL(auth.approve(first.authorize_url))
    client.auth.complete_oauth(str(used))
    second = client.auth.start_oauth("up", profile_id="second")
    replay = used.copy_set_param("state", second.state)
    with pytest.raises(palyra.OAuthError) as info:
        client.auth.complete_oauth(str(replay))
    assert info.value.error == "invalid_grant"
    third = client.auth.start_oauth("up", profile_id="third")
    book = client.auth._book.attempts
    taken = book.take(third.state)
    book.add(dataclasses.replace(taken, code_verifier="v" * 43))
    with pytest.raises(palyra.OAuthError) as info:
        client.auth.complete_oauth(auth.approve(third.authorize_url))
    assert info.value.error == "invalid_grant"
    assert [p.id for p in client.auth.list()] == ["up-default"]


@pytest.mark.parametrize(
    ("kind", "message"),
    [("html", "not JSON"), ("no_access_token", "no access_token"), ("500", "HTTP 500")],
)
def test_a_token_endpoint_that_fails_stores_nothing(
    kind: str, message: str, client: palyra.Palyra, auth: AuthServer, tmp_path: Path
) -> None:
    attempt = client.auth.start_oauth("up")
    callback = auth.approve(attempt.authorize_url)
    auth.fail_next(kind)
    with pytest.raises(palyra.OAuthError, match=message):
        client.auth.complete_oauth(callback)
    assert client.auth.list() == []
    assert repr(client.auth._book.vault) == "MemorySecretStore(0 secrets)"


def test_refresh_before_expiry_and_by_hand(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    auth.access_ttl = 120  # inside the 5-minute window: due at once
    vault = palyra.MemorySecretStore()
    with palyra.Palyra(oauth_config(auth, provider), secrets=vault, home=tmp_path) as c:
        profile = sign_in(c, auth)
        assert profile.health == "expiring"
        old = vault.get(f"{profile.id}:access_token")
        c.chat(HI)  # refreshed first: the provider never sees the old token
        assert auth.token_requests["refresh_token"] == 1
        assert provider.requests[-1].headers["authorization"] != f"Bearer {old}"
        auth.access_ttl = 3600
        again = c.auth.refresh(profile.id)
        assert auth.token_requests["refresh_token"] == 2
        assert again.health == "ok"
        assert again.updated_at > profile.updated_at
        c.chat(HI)
        assert auth.token_requests["refresh_token"] == 2  # not due any more


def test_every_client_of_the_process_uses_a_refreshed_token(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    config = oauth_config(auth, provider)
    one = palyra.Palyra(config, secrets=vault, home=tmp_path)
    two = palyra.Palyra(config, secrets=vault, home=tmp_path)
    profile = sign_in(one, auth)
    two.chat(HI)
    one.auth.refresh(profile.id)
    fresh = vault.get(f"{profile.id}:access_token")
    two.chat(HI)
    assert provider.requests[-1].headers["authorization"] == f"Bearer {fresh}"
    assert auth.token_requests["refresh_token"] == 1
    one.close()
    two.close()


def test_a_failed_refresh_backs_off_and_spares_other_profiles(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    with palyra.Palyra(oauth_config(auth, provider), secrets=vault, home=tmp_path) as c:
        failing = sign_in(c, auth, profile_id="failing")
        other = sign_in(c, auth, profile_id="other", name="other")
        auth.fail_next("500")
        with pytest.raises(palyra.OAuthError):
            c.auth.refresh("failing")
        hurt = c.auth.get("failing")
        assert hurt.health == "refresh_failed"
        assert hurt.refresh_failures == 1
        assert hurt.next_refresh_at is not None
        assert hurt.refresh_error is not None
        assert "500" not in hurt.refresh_error or "refused" in hurt.refresh_error
        assert c.auth.get("other").health == "ok"
        assert c.auth.refresh("other").health == "ok"
        assert failing.id != other.id


def test_oauth_bad_input_is_named(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    config = oauth_config(auth, provider)
    del config["providers"][0]["oauth"]
    with palyra.Palyra(config, secrets=palyra.MemorySecretStore(), home=tmp_path) as c:
        with pytest.raises(palyra.InvalidRequestError, match="no OAuth settings"):
            c.auth.start_oauth("up")
        with pytest.raises(palyra.InvalidRequestError, match="lack authorize_url"):
            c.auth.start_oauth("up", client_id="x")
        with pytest.raises(palyra.InvalidRequestError, match="scope"):
            c.auth.start_oauth("up", scope="everyone", client_id="x")
        with pytest.raises(palyra.InvalidRequestError, match="profile_id"):
            c.auth.start_oauth("up", profile_id="Not OK", client_id="x")
        with pytest.raises(palyra.InvalidRequestError, match="unknown"):
            c.auth.start_oauth("up", client_idd="x")
        with pytest.raises(palyra.InvalidRequestError, match="provider"):
            c.auth.start_oauth("nope")
        with pytest.raises(palyra.AuthProfileError, match="no auth profile"):
            c.auth.refresh("ghost")
        c.auth.connect_api_key("up", "sk-static-0123456789", validate=False)
        with pytest.raises(palyra.InvalidRequestError, match="API key"):
            c.auth.refresh("up-default")


def test_a_failed_revocation_deletes_nothing_and_a_retry_finishes(
    client: palyra.Palyra, auth: AuthServer, vault: palyra.MemorySecretStore
) -> None:
    profile = sign_in(client, auth, profile_id="work")
    auth.fail_next("revoke_500", count=3)
    with pytest.raises(palyra.InternalServerError, match="nothing was deleted"):
        client.auth.revoke(profile.id)
    assert len(auth.revocations) == 3  # tried three times, 100 ms apart
    assert client.auth.get("work").health == "ok"
    assert vault.get("work:refresh_token")
    client.auth.revoke("work")
    assert client.auth.list() == []
    assert repr(vault) == "MemorySecretStore(0 secrets)"
    with pytest.raises(palyra.AuthProfileError, match="no auth profile 'work'"):
        client.auth.revoke("work")


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_401_refreshes_once_then_the_call_is_made_again(
    driver: str, auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    vault = palyra.MemorySecretStore()
    c = palyra.Palyra(oauth_config(auth, provider), secrets=vault, home=tmp_path)
    profile = sign_in(c, auth)
    auth.expire_access_tokens()
    reply = c.chat(HI) if driver == "sync" else await c.achat(HI)
    assert reply.choices[0].message.content
    assert auth.token_requests["refresh_token"] == 1
    chats = [r for r in provider.requests if r.path.endswith("/chat/completions")]
    assert [r.headers["authorization"] for r in chats] == [
        chats[0].headers["authorization"],
        f"Bearer {vault.get(f'{profile.id}:access_token')}",
    ]
    # A provider that refuses every token: one refresh per call at most (the
    # retry's own 401 is not refreshed again within the call), no loop.
    provider.api_key = lambda token: False
    for _ in range(2):
        with pytest.raises(palyra.AuthenticationError):
            c.chat(HI) if driver == "sync" else await c.achat(HI)
    assert auth.token_requests["refresh_token"] == 3  # 1 + one per call
    chats = [r for r in provider.requests if r.path.endswith("/chat/completions")]
    assert len(chats) == 2 + 2 + 1
    await c.aclose()


def test_complete_can_validate_the_access_token(
    client: palyra.Palyra, auth: AuthServer, provider: Upstream
) -> None:
    attempt = client.auth.start_oauth("up", profile_id="checked")
    profile = client.auth.complete_oauth(
        auth.approve(attempt.authorize_url), validate=True
    )
    check = provider.requests[-1]
    assert (check.method, check.path) == ("GET", "/v1/models")
    assert profile.health == "ok"
    provider.api_key = lambda token: False  # the provider refuses the new token
    attempt = client.auth.start_oauth("up", profile_id="refused")
    with pytest.raises(palyra.AuthenticationError, match="nothing was stored"):
        client.auth.complete_oauth(auth.approve(attempt.authorize_url), validate=True)
    assert [p.id for p in client.auth.list()] == ["checked"]
