"""The loopback OAuth 2.0 authorization server (tests/auth/authserver.py),
proven against plain httpx: code + PKCE, single-use codes, refresh with
rotation, revocation, and the failures it can be told to produce."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.auth.authserver import CONFIDENTIAL_ID, CONFIDENTIAL_SECRET, AuthServer
from tests.upstream import Upstream

REDIRECT = "http://127.0.0.1:48213/callback"


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _authorize_url(
    auth: AuthServer,
    challenge: str | None,
    *,
    client_id: str = "palyra-test",
    redirect_uri: str = REDIRECT,
    state: str = "st-1",
) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid offline_access",
        "state": state,
    }
    if challenge is not None:
        query |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return f"{auth.authorize_url}?{urlencode(query)}"


def _code(auth: AuthServer, challenge: str | None, **kw: Any) -> str:
    location = auth.approve(_authorize_url(auth, challenge, **kw))
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [kw.get("state", "st-1")]
    return query["code"][0]


def _exchange(
    http: httpx.Client, auth: AuthServer, code: str, verifier: str | None, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "palyra-test",
        **extra,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return http.post(auth.token_url, data=form)


def _tokens(http: httpx.Client, auth: AuthServer) -> dict[str, Any]:
    verifier, challenge = _pkce()
    answer = _exchange(http, auth, _code(auth, challenge), verifier)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _refresh(http: httpx.Client, auth: AuthServer, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    return http.post(auth.token_url, data={**form, "client_id": "palyra-test"})


def test_the_code_flow_with_pkce_issues_valid_tokens(
    auth: AuthServer, http: httpx.Client
) -> None:
    """Authorize, consent, exchange the code with its verifier."""
    location = auth.approve(_authorize_url(auth, _pkce()[1]))
    assert location.startswith(REDIRECT + "?code=")
    tokens = _tokens(http, auth)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "openid offline_access"
    assert tokens["access_token"].startswith("at-")
    assert tokens["refresh_token"].startswith("rt-")
    assert auth.valid(tokens["access_token"])
    assert not auth.valid(tokens["refresh_token"])
    assert not auth.valid("at-forged")
    assert auth.token_requests == {"authorization_code": 1}
    assert auth.url.startswith("http://127.0.0.1:")


def test_any_loopback_port_is_a_redirect_uri_and_nothing_else(
    auth: AuthServer,
) -> None:
    """RFC 8252 §7.3: any port of 127.0.0.1; no other host, no fragment."""
    for uri in (
        "http://127.0.0.1:1/a",
        "http://127.0.0.1:65000/x/y",
        "http://[::1]:9/",
    ):
        assert auth.approve(_authorize_url(auth, _pkce()[1], redirect_uri=uri))
    for uri in ("http://example.com/cb", "https://127.0.0.1/cb", "http://127.0.0.1/#f"):
        with pytest.raises(AssertionError, match="authorize: HTTP 400"):
            auth.approve(_authorize_url(auth, _pkce()[1], redirect_uri=uri))


def test_a_denied_consent_redirects_with_access_denied(auth: AuthServer) -> None:
    """The browser comes back with the error and the state, no code."""
    location = auth.approve(_authorize_url(auth, _pkce()[1]), deny=True)
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["st-1"]
    assert "code" not in query


def test_a_wrong_or_missing_verifier_is_refused(
    auth: AuthServer, http: httpx.Client
) -> None:
    """PKCE is checked; a public client must use it."""
    _, challenge = _pkce()
    wrong = _exchange(http, auth, _code(auth, challenge), _pkce()[0])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    missing = _exchange(http, auth, _code(auth, challenge), None)
    assert missing.json()["error"] == "invalid_request"
    without_challenge = _exchange(http, auth, _code(auth, None), None)
    assert without_challenge.json() == {
        "error": "invalid_request",
        "error_description": "Missing 'code_verifier'",
    }


def test_a_code_is_single_use_and_its_reuse_revokes_its_tokens(
    auth: AuthServer, http: httpx.Client
) -> None:
    """RFC 6749 §4.1.2: the second exchange fails and ends the first's tokens."""
    verifier, challenge = _pkce()
    code = _code(auth, challenge)
    first = _exchange(http, auth, code, verifier).json()
    assert auth.valid(first["access_token"])
    again = _exchange(http, auth, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert not auth.valid(first["access_token"])
    assert _refresh(http, auth, first["refresh_token"]).status_code == 400


def test_the_redirect_uri_must_match_at_the_exchange(
    auth: AuthServer, http: httpx.Client
) -> None:
    """The code is bound to the redirect URI it was issued for."""
    verifier, challenge = _pkce()
    code = _code(auth, challenge)
    answer = _exchange(http, auth, code, verifier, redirect_uri=REDIRECT + "x")
    assert answer.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_retires_the_old_pair(
    auth: AuthServer, http: httpx.Client
) -> None:
    """Each refresh gives a new refresh token; the old one is refused after."""
    first = _tokens(http, auth)
    second = _refresh(http, auth, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == "openid offline_access"
    assert auth.valid(second["access_token"])
    assert not auth.valid(first["access_token"])
    reused = _refresh(http, auth, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    third = _refresh(http, auth, second["refresh_token"])
    assert third.status_code == 200
    assert auth.token_requests == {"authorization_code": 1, "refresh_token": 3}


def test_expired_access_tokens_are_invalid_but_refresh_still_works(
    auth: AuthServer, http: httpx.Client
) -> None:
    """expire_access_tokens() stands in for time passing."""
    auth.access_ttl = 120
    tokens = _tokens(http, auth)
    assert tokens["expires_in"] == 120
    auth.expire_access_tokens()
    assert not auth.valid(tokens["access_token"])
    fresh = _refresh(http, auth, tokens["refresh_token"]).json()
    assert auth.valid(fresh["access_token"])
    assert fresh["expires_in"] == 120


def test_concurrent_refreshes_with_one_token_give_one_winner(
    auth: AuthServer, http: httpx.Client
) -> None:
    """The server is strict: a refresh token rotates once, whatever races."""
    tokens = _tokens(http, auth)
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def refresh() -> None:
        barrier.wait()
        statuses.append(_refresh(http, auth, tokens["refresh_token"]).status_code)

    threads = [threading.Thread(target=refresh) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 9
    assert auth.token_requests["refresh_token"] == 10


def test_revocation_ends_the_pair(auth: AuthServer, http: httpx.Client) -> None:
    """RFC 7009: revoking the refresh token ends its access token too; an
    unknown token is a 200 as well."""
    tokens = _tokens(http, auth)
    form = {"token_type_hint": "refresh_token", "client_id": "palyra-test"}
    answer = http.post(
        auth.revocation_url, data={**form, "token": tokens["refresh_token"]}
    )
    assert answer.status_code == 200
    assert not auth.valid(tokens["access_token"])
    assert _refresh(http, auth, tokens["refresh_token"]).status_code == 400
    unknown = http.post(
        auth.revocation_url, data={"token": "x", "client_id": "palyra-test"}
    )
    assert unknown.status_code == 200
    assert auth.revocations == ["refresh_token", ""]


def test_revoking_an_access_token_keeps_its_refresh_token(
    auth: AuthServer, http: httpx.Client
) -> None:
    """With the access_token hint, only that token ends."""
    tokens = _tokens(http, auth)
    form = {"token": tokens["access_token"], "token_type_hint": "access_token"}
    http.post(auth.revocation_url, data={**form, "client_id": "palyra-test"})
    assert not auth.valid(tokens["access_token"])
    assert _refresh(http, auth, tokens["refresh_token"]).status_code == 200


def test_the_confidential_client_must_send_its_secret(
    auth: AuthServer, http: httpx.Client
) -> None:
    """client_secret_post or Basic; no secret or a wrong one is invalid_client."""
    verifier, challenge = _pkce()
    code = _code(auth, challenge, client_id=CONFIDENTIAL_ID)
    base = {"client_id": CONFIDENTIAL_ID}
    bare = _exchange(http, auth, code, verifier, **base)
    assert bare.json()["error"] == "invalid_client"
    wrong = _exchange(http, auth, code, verifier, **base, client_secret="nope")
    assert wrong.json()["error"] == "invalid_client"
    good = _exchange(
        http, auth, code, verifier, **base, client_secret=CONFIDENTIAL_SECRET
    )
    assert good.status_code == 200, good.text
    assert auth.requests[-1][1]["client_secret"] == CONFIDENTIAL_SECRET
    basic = http.post(
        auth.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": good.json()["refresh_token"],
        },
        auth=(CONFIDENTIAL_ID, CONFIDENTIAL_SECRET),
    )
    assert basic.status_code == 200


def test_token_endpoint_failures_can_be_injected(
    auth: AuthServer, http: httpx.Client
) -> None:
    """html, 500, no_access_token and slow, each for the next request only."""
    tokens = _tokens(http, auth)
    auth.fail_next("html")
    auth.fail_next("500")
    auth.fail_next("no_access_token")
    page = _refresh(http, auth, tokens["refresh_token"])
    assert (page.status_code, page.headers["content-type"]) == (
        200,
        "text/html; charset=utf-8",
    )
    assert _refresh(http, auth, tokens["refresh_token"]).status_code == 500
    empty = _refresh(http, auth, tokens["refresh_token"])
    assert empty.status_code == 200
    assert "access_token" not in empty.json()
    auth.fail_next("slow")
    started = time.monotonic()
    slow = _refresh(http, auth, tokens["refresh_token"])
    assert time.monotonic() - started >= 0.5
    assert slow.status_code == 200  # injected failures did not use the token
    assert auth.token_requests["refresh_token"] == 4


def test_failures_count_and_revocation_failures(
    auth: AuthServer, http: httpx.Client
) -> None:
    """fail_next(kind, count); revoke_500 hits the revocation endpoint only."""
    auth.fail_next("revoke_500")
    auth.fail_next("500", count=2)
    tokens_form = {"grant_type": "refresh_token", "refresh_token": "rt-x"}
    assert http.post(auth.token_url, data=tokens_form).status_code == 500
    assert http.post(auth.token_url, data=tokens_form).status_code == 500
    assert http.post(auth.token_url, data=tokens_form).status_code == 401
    revoke = {"token": "x", "client_id": "palyra-test"}
    assert http.post(auth.revocation_url, data=revoke).status_code == 500
    assert http.post(auth.revocation_url, data=revoke).status_code == 200
    with pytest.raises(ValueError, match="unknown failure"):
        auth.fail_next("teapot")


def test_a_delay_slows_every_token_request(
    auth: AuthServer, http: httpx.Client
) -> None:
    """set_delay() holds each answer back until it is reset."""
    auth.set_delay(0.1)
    started = time.monotonic()
    http.post(auth.token_url, data={"grant_type": "refresh_token"})
    assert time.monotonic() - started >= 0.1
    auth.set_delay(0)


def test_the_insecure_transport_switch_is_scoped_to_the_servers() -> None:
    """authlib's http switch is set while a server runs, then restored."""
    assert "AUTHLIB_INSECURE_TRANSPORT" not in os.environ
    with AuthServer(), AuthServer():
        assert os.environ["AUTHLIB_INSECURE_TRANSPORT"] == "1"
    assert "AUTHLIB_INSECURE_TRANSPORT" not in os.environ
    outer, inner = AuthServer(), AuthServer()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # not in the order they started
    assert os.environ["AUTHLIB_INSECURE_TRANSPORT"] == "1"
    inner.__exit__(None, None, None)
    assert "AUTHLIB_INSECURE_TRANSPORT" not in os.environ


def test_an_upstream_accepts_exactly_the_valid_access_tokens(
    auth: AuthServer, http: httpx.Client
) -> None:
    """Upstream(api_key=auth.valid): rotation and revocation take effect."""
    tokens = _tokens(http, auth)
    with Upstream(api_key=auth.valid) as upstream:

        def models(token: str) -> int:
            headers = {"authorization": f"Bearer {token}"}
            return http.get(f"{upstream.base_url}/models", headers=headers).status_code

        assert models(tokens["access_token"]) == 200
        fresh = _refresh(http, auth, tokens["refresh_token"]).json()
        assert models(tokens["access_token"]) == 401
        assert models(fresh["access_token"]) == 200
        auth.expire_access_tokens()
        assert models(fresh["access_token"]) == 401
    assert not upstream.errors
