"""OAuth 2.0 code + PKCE, the pure parts: settings, attempts, the attempt
book, the callback, the endpoint requests and the reading of their answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

from palyra import InvalidRequestError, OAuthError
from palyra._auth import (
    AttemptBook,
    Callback,
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

NOW = 1_700_000_000.0
REDIRECT = "http://127.0.0.1:53682/callback"
SECRET = "client-secret-0123456789abcdef"
REFRESH = "rt-0123456789abcdefSECRET"


def _client(**fields: Any) -> OAuthClient:
    settings: dict[str, Any] = {
        "provider": "openai",
        "client_id": "app_123",
        "authorize_url": "https://auth.example.com/authorize",
        "token_url": "https://auth.example.com/token",
        "scopes": ("openid", "offline_access"),
    }
    return OAuthClient(**{**settings, **fields})


def _attempt(client: OAuthClient | None = None, now: float = NOW) -> OAuthAttempt:
    return start_attempt(
        client or _client(),
        profile_id="work",
        scope="global",
        redirect_uri=REDIRECT,
        now=now,
    )


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# ------------------------------------------------------------------ attempts


def test_the_verifier_is_43_url_safe_characters_and_the_challenge_its_s256() -> None:
    """RFC 7636: 32 random bytes, base64url without padding; S256 challenge."""
    attempt = _attempt()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", attempt.code_verifier)
    query = dict(_query(attempt.authorize_url))
    digest = hashlib.sha256(attempt.code_verifier.encode("ascii")).digest()
    assert query["code_challenge"] == _b64(digest)
    assert query["code_challenge_method"] == "S256"
    assert _attempt().code_verifier != attempt.code_verifier


def test_state_is_its_own_random_value_not_the_id() -> None:
    """The state is not the attempt id (the reference's was), and is long."""
    attempt = _attempt()
    assert attempt.state != attempt.id
    assert len(attempt.state) >= 43
    assert re.fullmatch(r"[A-Za-z0-9_-]+", attempt.state)
    assert re.fullmatch(r"[0-9a-f]{32}", attempt.id)
    assert dict(_query(attempt.authorize_url))["state"] == attempt.state
    assert _attempt().state != attempt.state


def test_the_authorize_url_has_its_parameters_in_order_and_encoded() -> None:
    """response_type, client_id, redirect_uri, scope, the challenge, the
    extra parameters, state: percent-encoded, spaces as %20."""
    client = _client(extra_params={"audience": "https://api.example.com/v1"})
    attempt = _attempt(client)
    base, _, raw = attempt.authorize_url.partition("?")
    assert base == "https://auth.example.com/authorize"
    pairs = _query(attempt.authorize_url)
    assert [key for key, _ in pairs] == [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "audience",
        "state",
    ]
    assert dict(pairs)["redirect_uri"] == REDIRECT
    assert dict(pairs)["scope"] == "openid offline_access"
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2Fcallback" in raw
    assert "scope=openid%20offline_access" in raw
    assert "audience=https%3A%2F%2Fapi.example.com%2Fv1" in raw
    assert "+" not in raw


def test_no_scope_parameter_when_there_are_no_scopes() -> None:
    """An empty scope list sends no scope (the server's default applies)."""
    pairs = _query(_attempt(_client(scopes=())).authorize_url)
    assert "scope" not in dict(pairs)


def test_a_hand_built_client_cannot_smuggle_a_second_state() -> None:
    """The config refuses reserved extra_params; start_attempt does too."""
    client = _client(extra_params={"State": "mine"})
    with pytest.raises(InvalidRequestError, match="extra_params: 'State' is set"):
        _attempt(client)


def test_an_attempt_knows_its_expiry_and_what_it_is_for() -> None:
    """Ten minutes, as an aware UTC datetime; the profile rides along."""
    attempt = _attempt()
    assert attempt.expires_at == datetime.fromtimestamp(NOW + 600, tz=UTC)
    assert attempt.expires_at.tzinfo is UTC
    assert (attempt.profile_id, attempt.scope, attempt.provider) == (
        "work",
        "global",
        "openai",
    )
    assert attempt.redirect_uri == REDIRECT
    assert not attempt.expired(NOW + 599.9)
    assert attempt.expired(NOW + 600)


@pytest.mark.parametrize(
    "uri", ["http://example.com/cb", "http://127.0.0.1/cb#x", "ftp://127.0.0.1/cb"]
)
def test_start_attempt_refuses_a_bad_redirect_uri(uri: str) -> None:
    """The config's rules hold for a redirect URI given to the flow."""
    with pytest.raises(InvalidRequestError, match=r"^redirect_uri: "):
        start_attempt(_client(), profile_id="p", scope="global", redirect_uri=uri)


# ------------------------------------------------------------------ settings


def test_settings_come_from_overrides_then_the_table_then_the_preset() -> None:
    """An override beats the table, the table beats the preset."""
    table = OAuthConfig(
        preset="openai", client_id="app_cfg", scopes=["openid"], redirect_uri=REDIRECT
    )
    client = client_settings(
        "openai", table, {"token_url": "http://127.0.0.1:9/token"}, environ={}
    )
    assert client.provider == "openai"
    assert client.client_id == "app_cfg"
    assert client.token_url == "http://127.0.0.1:9/token"
    assert client.authorize_url == "https://auth.openai.com/authorize"
    assert client.revocation_url == "https://auth0.openai.com/oauth/revoke"
    assert client.scopes == ("openid",)
    assert client.redirect_uri == REDIRECT
    assert dict(client.extra_params) == {"audience": "https://api.openai.com/v1"}
    assert client.client_secret is None
    mine = client_settings("openai", table, {"client_id": "app_override"}, environ={})
    assert mine.client_id == "app_override"
    bare = client_settings(
        "x",
        None,
        {"preset": "openai", "client_id": "a", "scopes": ["s1", "s1", "s2"]},
        environ={},
    )
    assert bare.scopes == ("s1", "s2")


def test_a_confidential_clients_secret_is_read_from_its_variable() -> None:
    """The secret is read when the flow starts, and never shown."""
    table = OAuthConfig(preset="openai", client_id="a", client_secret_env="MY_SECRET")
    client = client_settings("openai", table, {}, environ={"MY_SECRET": SECRET})
    assert client.client_secret == SECRET
    assert SECRET not in repr(client)
    with pytest.raises(InvalidRequestError) as info:
        client_settings("openai", table, {}, environ={"MY_SECRET": " "})
    text = str(info.value)
    assert "environment variable MY_SECRET (oauth.client_secret_env) is not set" in text


def test_an_unknown_override_is_named_with_a_suggestion() -> None:
    """A misspelt override says what was meant."""
    with pytest.raises(InvalidRequestError) as info:
        client_settings("openai", None, {"tokn_url": "https://a.example/t"})
    assert "unknown OAuth setting 'tokn_url' (did you mean 'token_url'?)" in str(
        info.value
    )
    with pytest.raises(InvalidRequestError, match="'zzz'; known: preset"):
        client_settings("openai", None, {"zzz": 1})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"token_url": "http://auth.example.com/t"}, "token_url: must be https, or"),
        ({"authorize_url": "https://u:p@a.example/a"}, "authorize_url: must not"),
        ({"revocation_url": "https://a.example/r#f"}, "revocation_url: must not"),
        ({"scopes": ["a b"]}, "scopes: scope 'a b' is not an RFC 6749 scope"),
        ({"extra_params": {"state": "x"}}, "extra_params: key 'state' is set by"),
        ({"client_secret_env": "not a name"}, "client_secret_env: must be an"),
        ({"preset": "github"}, "preset: "),
    ],
)
def test_a_bad_override_is_an_invalid_request_naming_it(
    override: dict[str, Any], message: str
) -> None:
    """The config's rules, reported as the caller's mistake (no ConfigError
    in the chain)."""
    table = OAuthConfig(preset="openai", client_id="a")
    with pytest.raises(InvalidRequestError) as info:
        client_settings("openai", table, override, environ={})
    assert "provider 'openai' OAuth settings: " in str(info.value)
    assert message in str(info.value)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


def test_no_oauth_settings_at_all_says_how_to_add_them() -> None:
    """Neither a table nor overrides: the message names both ways."""
    with pytest.raises(InvalidRequestError) as info:
        client_settings("acme", None, {})
    assert str(info.value) == (
        "provider 'acme' has no OAuth settings: add an [providers.oauth] table"
        ' (or preset = "openai") or pass authorize_url=, token_url=, client_id='
    )
    with pytest.raises(InvalidRequestError, match="has no OAuth settings"):
        client_settings("acme", OAuthConfig(), {})


def test_each_missing_setting_is_named() -> None:
    """The openai preset has no client id: the user brings theirs."""
    with pytest.raises(InvalidRequestError) as info:
        client_settings("openai", OAuthConfig(preset="openai"), {})
    assert "OAuth settings lack client_id: set them" in str(info.value)
    assert "pass client_id=" in str(info.value)
    with pytest.raises(InvalidRequestError) as info:
        client_settings("x", None, {"client_id": "a"})
    assert "lack authorize_url, token_url" in str(info.value)
    assert "pass authorize_url=, token_url=" in str(info.value)


# ------------------------------------------------------------- attempt book


def test_an_attempt_is_taken_once_by_its_state() -> None:
    """The state finds the attempt and removes it; a replay is told why."""
    book = AttemptBook()
    attempt = _attempt()
    book.add(attempt, now=NOW)
    assert book.get(attempt.id, now=NOW) is attempt
    assert len(book) == 1
    assert book.take(attempt.state, now=NOW + 1) is attempt
    assert len(book) == 0
    assert book.get(attempt.id, now=NOW + 1) is None
    with pytest.raises(OAuthError) as info:
        book.take(attempt.state, now=NOW + 2)
    assert info.value.provider == "openai"
    assert info.value.message == (
        "this OAuth attempt was already completed; an authorization code is"
        " single-use: start a new attempt"
    )


def test_a_wrong_state_is_unknown() -> None:
    """No attempt matches: the message says what that can mean."""
    book = AttemptBook()
    book.add(_attempt(), now=NOW)
    for state in ("nope", "", "é" * 43):
        with pytest.raises(OAuthError) as info:
            book.take(state, now=NOW)
        assert str(info.value) == (
            "unknown state: no OAuth attempt in progress matches it (a wrong"
            " state, an attempt from another process, or one already completed)"
        )
    assert len(book) == 1


def test_an_expired_attempt_is_refused_and_removed() -> None:
    """Past ten minutes the callback is refused, and stays refused."""
    book = AttemptBook()
    attempt = _attempt()
    book.add(attempt, now=NOW)
    for moment in (NOW + 600, NOW + 700):
        with pytest.raises(OAuthError) as info:
            book.take(attempt.state, now=moment)
        assert str(info.value).startswith(
            "this OAuth attempt expired after 10 minutes; start a new one"
        )
        assert info.value.provider == "openai"
    assert len(book) == 0


def test_expired_attempts_are_swept_by_add_and_still_recognised() -> None:
    """A sweep removes old attempts; their states still say "expired" for
    30 minutes, then are forgotten."""
    book = AttemptBook()
    old = _attempt(now=NOW)
    book.add(old, now=NOW)
    book.add(_attempt(now=NOW + 601), now=NOW + 601)
    assert len(book) == 1
    assert book.get(old.id, now=NOW + 601) is None
    with pytest.raises(OAuthError, match="expired after 10 minutes"):
        book.take(old.state, now=NOW + 602)
    with pytest.raises(OAuthError, match=r"^unknown state"):
        book.take(old.state, now=NOW + 602 + 1801)


def test_states_are_compared_in_constant_time_with_every_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No dict lookup by state: hmac.compare_digest sees every pending one."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    book = AttemptBook()
    attempts = [_attempt() for _ in range(5)]
    for attempt in attempts:
        book.add(attempt, now=NOW)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert book.take(attempts[2].state, now=NOW) is attempts[2]
    assert len(calls) == 5
    assert {a for a, _ in calls} == {a.state.encode() for a in attempts}
    calls.clear()
    with pytest.raises(OAuthError, match="already completed"):
        book.take(attempts[2].state, now=NOW)
    assert len(calls) == 4 + 1  # the four pending, then the one taken's digest


def test_fifty_threads_taking_one_state_give_it_to_exactly_one() -> None:
    """Single use holds under contention."""
    book = AttemptBook()
    attempt = _attempt()
    book.add(attempt, now=NOW)
    barrier = threading.Barrier(50)
    won: list[OAuthAttempt] = []
    lost: list[str] = []

    def take() -> None:
        barrier.wait()
        try:
            won.append(book.take(attempt.state, now=NOW))
        except OAuthError as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=take) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert won == [attempt]
    assert len(lost) == 49
    assert all("already completed" in text for text in lost)


def test_the_book_is_bounded() -> None:
    """Past max_pending, the oldest attempt is dropped."""
    book = AttemptBook(max_pending=3)
    attempts = [_attempt() for _ in range(4)]
    for attempt in attempts:
        book.add(attempt, now=NOW)
    assert len(book) == 3
    assert book.get(attempts[0].id, now=NOW) is None
    with pytest.raises(OAuthError, match=r"^unknown state"):
        book.take(attempts[0].state, now=NOW)
    assert book.take(attempts[3].state, now=NOW) is attempts[3]
    assert repr(book) == "AttemptBook(2 pending)"


# ------------------------------------------------------------------ callback


def test_parse_callback_reads_the_query_and_explicit_values_win() -> None:
    """code, state, error, error_description; code= and state= override."""
    url = f"{REDIRECT}?code=abc%2F1&state=st&scope=openid"
    assert parse_callback(url) == Callback("abc/1", "st", None, None)
    assert parse_callback(url, code="other", state="s2") == Callback(
        "other", "s2", None, None
    )
    assert parse_callback(None, code="c", state="s") == Callback("c", "s", None, None)
    denied = f"{REDIRECT}?error=access_denied&error_description=No+way&state=st"
    assert parse_callback(denied) == Callback(None, "st", "access_denied", "No way")


@pytest.mark.parametrize(
    ("url", "kw", "message"),
    [
        (f"{REDIRECT}?code=abc", {}, "state: missing"),
        (f"{REDIRECT}?code=abc&state=", {}, "state: missing"),
        (None, {"code": "abc"}, "state: missing"),
        (f"{REDIRECT}?state=s", {}, "code: missing"),
        (f"{REDIRECT}?code=a&code=b&state=s", {}, "code: given more than once"),
        (f"{REDIRECT}?code=a&state=s&state=t", {}, "state: given more than once"),
        (f"{REDIRECT}?code=a&state=s&" + "x=1&" * 100, {}, "callback_url: is not"),
        (REDIRECT + "?code=" + "a" * 20000 + "&state=s", {}, "callback_url: must be"),
        ("http://[::1/cb?code=a&state=s", {}, "callback_url: is not"),
    ],
)
def test_parse_callback_refuses_what_it_cannot_use(
    url: str | None, kw: dict[str, str], message: str
) -> None:
    """Each problem is an InvalidRequestError naming the parameter."""
    with pytest.raises(InvalidRequestError) as info:
        parse_callback(url, **kw)
    assert str(info.value).startswith(message)
    assert info.value.__context__ is None


def test_callback_error_reports_the_servers_refusal_redacted() -> None:
    """error= callbacks: the code if it is one, the description cut short."""
    exc = callback_error(
        Callback(None, "st", "access_denied", "The user said no"), "openai"
    )
    assert isinstance(exc, OAuthError)
    assert (
        exc.message
        == "the authorization server refused: access_denied: The user said no"
    )
    assert (exc.error, exc.error_description) == ("access_denied", "The user said no")
    assert exc.provider == "openai"
    odd = callback_error(
        Callback(None, "st", "<script>", "token=" + REFRESH + " " + "x" * 500), "o"
    )
    assert odd.error == "invalid"
    assert odd.error_description is not None
    assert REFRESH not in str(odd)
    assert len(odd.error_description) <= 241
    plain = callback_error(Callback(None, "st", "server_error", None), "o")
    assert plain.message == "the authorization server refused: server_error"
    assert plain.error_description is None


# ---------------------------------------------------------------- requests


def _form(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.content.decode(), keep_blank_values=True)


def _assert_post(request: httpx.Request, url: str) -> None:
    assert request.method == "POST"
    assert str(request.url) == url
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "cookie" not in request.headers
    assert "authorization" not in request.headers


def test_the_code_request_carries_the_verifier_and_a_secret_only_if_any() -> None:
    """RFC 6749 §4.1.3 with PKCE; a client secret goes in the body."""
    attempt = _attempt()
    request = code_request(attempt, "code-1/2")
    _assert_post(request, "https://auth.example.com/token")
    assert _form(request) == [
        ("grant_type", "authorization_code"),
        ("code", "code-1/2"),
        ("redirect_uri", REDIRECT),
        ("client_id", "app_123"),
        ("code_verifier", attempt.code_verifier),
    ]
    confidential = _attempt(_client(client_secret=SECRET))
    assert _form(code_request(confidential, "c"))[-1] == ("client_secret", SECRET)
    with pytest.raises(InvalidRequestError, match="code: must be a non-empty"):
        code_request(attempt, "")


def test_the_refresh_request() -> None:
    """RFC 6749 §6: scope only when there are scopes."""
    request = refresh_request(
        "https://a.example/token",
        REFRESH,
        client_id="app",
        client_secret=SECRET,
        scopes=["openid", "email"],
    )
    _assert_post(request, "https://a.example/token")
    assert _form(request) == [
        ("grant_type", "refresh_token"),
        ("refresh_token", REFRESH),
        ("client_id", "app"),
        ("client_secret", SECRET),
        ("scope", "openid email"),
    ]
    bare = refresh_request(
        "https://a.example/token",
        REFRESH,
        client_id=None,
        client_secret=None,
        scopes=(),
    )
    assert _form(bare) == [("grant_type", "refresh_token"), ("refresh_token", REFRESH)]


def test_the_revocation_request() -> None:
    """RFC 7009: token, token_type_hint, client_id, client_secret if any."""
    request = revocation_request(
        "https://a.example/revoke", REFRESH, client_id="app", client_secret=None
    )
    _assert_post(request, "https://a.example/revoke")
    assert _form(request) == [
        ("token", REFRESH),
        ("token_type_hint", "refresh_token"),
        ("client_id", "app"),
    ]
    access = revocation_request(
        "https://a.example/revoke",
        "at",
        client_id="app",
        client_secret=SECRET,
        hint="access_token",
    )
    assert _form(access)[1:] == [
        ("token_type_hint", "access_token"),
        ("client_id", "app"),
        ("client_secret", SECRET),
    ]


# ----------------------------------------------------------------- answers


def _answer(status: int, **kw: Any) -> httpx.Response:
    return httpx.Response(status, **kw)


def test_read_tokens_takes_a_token_answer() -> None:
    """access_token, refresh_token, expires_in (number or numeric string),
    scope."""
    tokens = read_tokens(
        _answer(
            200,
            json={
                "access_token": "at-1",
                "token_type": "Bearer",
                "refresh_token": "rt-1",
                "expires_in": 3600,
                "scope": "openid email",
            },
        ),
        provider="openai",
    )
    assert tokens == Tokens(
        access_token="at-1",
        refresh_token="rt-1",
        expires_in=3600.0,
        scopes=("openid", "email"),
    )
    quoted = read_tokens(
        _answer(200, json={"access_token": "at", "expires_in": " 120 "}), provider="o"
    )
    assert quoted.expires_in == 120.0
    assert quoted.refresh_token is None
    assert quoted.scopes == ()
    blank = read_tokens(
        _answer(200, json={"access_token": "at", "refresh_token": "  "}), provider="o"
    )
    assert blank.refresh_token is None
    assert blank.expires_in is None
    alias = read_tokens(
        _answer(200, json={"access_token": "at", "expired_in": "60"}), provider="o"
    )
    assert alias.expires_in == 60.0


@pytest.mark.parametrize(
    "value", ['"soon"', "-1", "true", '"nan"', "1e400", "NaN", "[]", "1" + "0" * 30]
)
def test_an_expires_in_that_is_no_number_of_seconds_is_refused(value: str) -> None:
    """A bad lifetime would make refresh timing wrong: it is an error."""
    body = f'{{"access_token": "at", "expires_in": {value}}}'
    answer = _answer(200, content=body.encode())
    with pytest.raises(OAuthError, match="expires_in is not a number"):
        read_tokens(answer, provider="o")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            _answer(
                400, json={"error": "invalid_grant", "error_description": "Bad code"}
            ),
            "token endpoint refused (HTTP 400): invalid_grant: Bad code",
        ),
        (
            _answer(200, json={"error": "slow_down"}),
            "token endpoint refused (HTTP 200): slow_down",
        ),
        (
            _answer(500, json={"message": "boom"}),
            "token endpoint refused (HTTP 500) without an RFC 6749 error",
        ),
        (
            _answer(
                200,
                text="<html><body>Sign in</body></html>",
                headers={"content-type": "text/html; charset=utf-8"},
            ),
            "token endpoint answered HTTP 200 with text/html; charset=utf-8, not"
            " JSON: <html><body>Sign in</body></html>",
        ),
        (_answer(502, content=b""), "token endpoint answered HTTP 502 with no"),
        (_answer(200, json={"token_type": "Bearer"}), "answer has no access_token"),
        (_answer(200, json={"access_token": " "}), "answer has no access_token"),
        (_answer(200, json=["at"]), "answer is not a JSON object"),
        (
            _answer(200, json={"access_token": "a b"}),
            "access_token is not a string of visible ASCII",
        ),
        (
            _answer(200, json={"access_token": "a", "refresh_token": 5}),
            "refresh_token is not a string of visible ASCII",
        ),
        (
            _answer(200, content=b"[" * 100_000),
            "token endpoint answered HTTP 200 with no content type, not JSON",
        ),
        (_answer(200, content=b" " * (1024 * 1024 + 1)), "is over 1 MiB"),
    ],
)
def test_read_tokens_refuses_what_is_no_token_answer(
    answer: httpx.Response, message: str
) -> None:
    """Each failure says what the endpoint did; nothing is chained."""
    with pytest.raises(OAuthError) as info:
        read_tokens(answer, provider="openai")
    assert message in str(info.value)
    assert str(info.value).endswith("(provider=openai)")
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


def test_an_rfc6749_error_sets_the_fields() -> None:
    """error and error_description are kept for callers to branch on."""
    answer = _answer(400, json={"error": "invalid_grant", "error_description": "x"})
    with pytest.raises(OAuthError) as info:
        read_tokens(answer, provider="o")
    assert (info.value.error, info.value.error_description) == ("invalid_grant", "x")
    odd = _answer(400, json={"error": "no such\nerror", "error_description": 7})
    with pytest.raises(OAuthError) as info:
        read_tokens(odd, provider="o")
    assert (info.value.error, info.value.error_description) == ("invalid", None)


def _chain(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    seen: BaseException | None = exc
    while seen is not None:
        text += repr(seen) + str(vars(seen))
        seen = seen.__cause__ or seen.__context__
    return text


@pytest.mark.parametrize(
    "build",
    [
        lambda: _answer(
            400,
            json={
                "error": "invalid_grant",
                "error_description": f"refresh token {REFRESH} was revoked",
            },
        ),
        lambda: _answer(
            200,
            text=f"<html>your token is {REFRESH}</html>",
            headers={"content-type": "text/html"},
        ),
        lambda: _answer(200, text=f'{{"access_token": "{REFRESH}", oops'),
    ],
)
def test_a_secret_echoed_by_the_server_never_reaches_the_error(
    build: Callable[[], httpx.Response],
) -> None:
    """The refresh token sent is scrubbed from every text of the error, its
    repr and its chain."""
    with pytest.raises(OAuthError) as info:
        read_tokens(build(), provider="o", secrets=[REFRESH, ""])
    assert REFRESH not in _chain(info.value)
    assert REFRESH not in (info.value.error_description or "")


def test_revocation_result_is_done_on_2xx_and_an_error_otherwise() -> None:
    """RFC 7009: 200 (body ignored) is success; a refusal is an OAuthError."""
    revocation_result(_answer(200, text="not json"), provider="o")
    revocation_result(_answer(204), provider="o")
    refusal = _answer(
        400,
        json={"error": "unsupported_token_type", "error_description": f"no {REFRESH}"},
    )
    with pytest.raises(OAuthError) as info:
        revocation_result(refusal, provider="o", secrets=[REFRESH])
    assert str(info.value).startswith(
        "revocation endpoint refused (HTTP 400): unsupported_token_type: no"
    )
    assert REFRESH not in _chain(info.value)
    assert info.value.error == "unsupported_token_type"
    unavailable = _answer(503, text="busy", headers={"content-type": "text/plain"})
    with pytest.raises(OAuthError, match="answered HTTP 503 with text/plain, not"):
        revocation_result(unavailable, provider="o")


def test_an_answer_that_was_not_read_is_a_programming_error() -> None:
    """Reading is the sender's job (it bounds the size): httpx says so."""

    def stream() -> Any:
        yield b"{}"

    response = httpx.Response(200, content=stream())
    with pytest.raises(httpx.ResponseNotRead):
        read_tokens(response, provider="o")


# -------------------------------------------------------------------- reprs


def test_no_repr_shows_a_secret() -> None:
    """OAuthClient, OAuthAttempt and Tokens keep their secrets out of repr."""
    client = _client(client_secret=SECRET)
    attempt = _attempt(client)
    tokens = Tokens(access_token="at-" + SECRET, refresh_token=REFRESH, expires_in=5)
    assert SECRET not in repr(client)
    assert "client_id='app_123'" in repr(client)
    shown = repr(attempt)
    for hidden in (attempt.state, attempt.code_verifier, SECRET, attempt.authorize_url):
        assert hidden not in shown
    assert shown == (
        f"OAuthAttempt(id={attempt.id!r}, provider='openai',"
        f" redirect_uri={REDIRECT!r}, expires_at={attempt.expires_at!r})"
    )
    assert repr(tokens) == "Tokens(expires_in=5, scopes=())"
    assert unquote(attempt.authorize_url).count(attempt.state) == 1
