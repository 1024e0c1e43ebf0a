"""palyra's pure OAuth steps against a real authorization server on
loopback: what they build is accepted, and what it answers is read right."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from palyra import OAuthError
from palyra._auth import (
    AttemptBook,
    OAuthAttempt,
    OAuthClient,
    Tokens,
    callback_error,
    client_settings,
    code_request,
    parse_callback,
    read_tokens,
    refresh_request,
    revocation_request,
    revocation_result,
    start_attempt,
)
from palyra._config import OAuthConfig
from tests.auth.authserver import CONFIDENTIAL_ID, CONFIDENTIAL_SECRET, AuthServer

pytestmark = pytest.mark.e2e

REDIRECT = "http://127.0.0.1:53682/callback"


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def _client(auth: AuthServer, **overrides: object) -> OAuthClient:
    table = OAuthConfig(
        client_id=auth.client_id,
        authorize_url=auth.authorize_url,
        token_url=auth.token_url,
        revocation_url=auth.revocation_url,
        scopes=["openid", "offline_access"],
    )
    return client_settings(
        "local", table, overrides, environ={"SECRET": CONFIDENTIAL_SECRET}
    )


def _send(http: httpx.Client, request: httpx.Request) -> httpx.Response:
    response = http.send(request)
    response.read()
    return response


def _connect(
    http: httpx.Client, auth: AuthServer, client: OAuthClient
) -> tuple[OAuthAttempt, Tokens]:
    book = AttemptBook()
    attempt = start_attempt(
        client, profile_id="work", scope="global", redirect_uri=REDIRECT
    )
    book.add(attempt)
    callback = parse_callback(auth.approve(attempt.authorize_url))
    taken = book.take(callback.state or "")
    assert taken is attempt
    assert callback.code is not None
    answer = _send(http, code_request(taken, callback.code))
    secrets = [callback.code, attempt.code_verifier]
    return attempt, read_tokens(answer, provider="local", secrets=secrets)


def test_connect_refresh_and_revoke(auth: AuthServer, http: httpx.Client) -> None:
    """The whole life of a connection, with rotation."""
    client = _client(auth)
    _, tokens = _connect(http, auth, client)
    assert auth.valid(tokens.access_token)
    assert tokens.expires_in == 3600.0
    assert tokens.scopes == ("openid", "offline_access")
    assert tokens.refresh_token is not None
    refresh = refresh_request(
        client.token_url,
        tokens.refresh_token,
        client_id=client.client_id,
        client_secret=None,
        scopes=client.scopes,
    )
    fresh = read_tokens(_send(http, refresh), provider="local")
    assert fresh.refresh_token not in (None, tokens.refresh_token)
    assert auth.valid(fresh.access_token)
    assert not auth.valid(tokens.access_token)
    with pytest.raises(OAuthError) as info:
        read_tokens(
            _send(http, refresh), provider="local", secrets=[tokens.refresh_token]
        )
    assert info.value.error == "invalid_grant"
    assert fresh.refresh_token is not None
    assert client.revocation_url is not None
    revoke = revocation_request(
        client.revocation_url,
        fresh.refresh_token,
        client_id=client.client_id,
        client_secret=None,
    )
    revocation_result(_send(http, revoke), provider="local")
    assert not auth.valid(fresh.access_token)
    assert auth.token_requests == {"authorization_code": 1, "refresh_token": 2}
    assert auth.revocations == ["refresh_token"]


def test_a_confidential_client_sends_its_secret_in_the_body(
    auth: AuthServer, http: httpx.Client
) -> None:
    """client_secret_env is read, and the secret goes in the form."""
    client = _client(auth, client_id=CONFIDENTIAL_ID, client_secret_env="SECRET")
    _, tokens = _connect(http, auth, client)
    assert auth.valid(tokens.access_token)
    assert auth.requests[-1][1]["client_secret"] == CONFIDENTIAL_SECRET


def test_a_replayed_callback_or_code_is_refused(
    auth: AuthServer, http: httpx.Client
) -> None:
    """The book refuses the state twice; the server refuses the code twice."""
    client = _client(auth)
    book = AttemptBook()
    attempt = start_attempt(
        client, profile_id="p", scope="global", redirect_uri=REDIRECT
    )
    book.add(attempt)
    location = auth.approve(attempt.authorize_url)
    callback = parse_callback(location)
    book.take(callback.state or "")
    with pytest.raises(OAuthError, match="already completed"):
        book.take(parse_callback(location).state or "")
    assert callback.code is not None
    read_tokens(_send(http, code_request(attempt, callback.code)), provider="local")
    again = _send(http, code_request(attempt, callback.code))
    with pytest.raises(OAuthError) as info:
        read_tokens(again, provider="local", secrets=[callback.code])
    assert str(info.value).startswith(
        "token endpoint refused (HTTP 400): invalid_grant"
    )
    assert callback.code not in str(info.value)


def test_a_denied_consent_is_the_servers_refusal(auth: AuthServer) -> None:
    """An error= callback becomes an OAuthError; no token request is made."""
    attempt = start_attempt(
        _client(auth), profile_id="p", scope="global", redirect_uri=REDIRECT
    )
    callback = parse_callback(auth.approve(attempt.authorize_url, deny=True))
    assert callback.state == attempt.state
    error = callback_error(callback, "local")
    assert error.error == "access_denied"
    assert auth.token_requests == {}


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("html", "token endpoint answered HTTP 200 with text/html; charset=utf-8"),
        ("500", "token endpoint answered HTTP 500 with text/plain; charset=utf-8"),
        ("no_access_token", "token endpoint's answer has no access_token"),
    ],
)
def test_a_failing_token_endpoint_is_an_oauth_error(
    auth: AuthServer, http: httpx.Client, failure: str, message: str
) -> None:
    """Injected failures at the exchange read as clear errors."""
    auth.fail_next(failure)
    with pytest.raises(OAuthError, match=message):
        _connect(http, auth, _client(auth))


def test_a_failing_revocation_endpoint_is_an_oauth_error(
    auth: AuthServer, http: httpx.Client
) -> None:
    """A 5xx is the caller's to retry; after that it is an error."""
    _, tokens = _connect(http, auth, _client(auth))
    assert tokens.refresh_token is not None
    auth.fail_next("revoke_500")
    revoke = revocation_request(
        auth.revocation_url,
        tokens.refresh_token,
        client_id=auth.client_id,
        client_secret=None,
    )
    with pytest.raises(OAuthError, match="revocation endpoint answered HTTP 500"):
        revocation_result(_send(http, revoke), provider="local")
    revocation_result(_send(http, revoke), provider="local")
    assert not auth.valid(tokens.access_token)
