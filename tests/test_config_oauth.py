"""The ``oauth`` table of a provider: endpoints, scopes, parameters, presets."""

from __future__ import annotations

from typing import Any

import pytest

from palyra import ConfigError, PalyraConfig
from palyra._config import OAuthConfig
from palyra._config.oauth import OPENAI_OAUTH_PRESET


def _error(**fields: Any) -> str:
    with pytest.raises(ConfigError) as info:
        OAuthConfig(**fields)
    return str(info.value)


def test_a_provider_takes_an_oauth_table_and_errors_name_its_path() -> None:
    """The table sits under a provider; a bad key is named by its full path."""
    provider = {"id": "o", "kind": "openai", "oauth": {"preset": "openai"}}
    config = PalyraConfig.from_dict(
        {"providers": [provider], "models": [{"id": "m", "provider": "o"}]}
    )
    oauth = config.providers[0].oauth
    assert oauth is not None
    assert oauth.preset == "openai"
    provider["oauth"] = {"token_url": "http://auth.example.com/token"}
    with pytest.raises(ConfigError) as info:
        PalyraConfig.from_dict(
            {"providers": [provider], "models": [{"id": "m", "provider": "o"}]}
        )
    assert str(info.value).endswith(
        "providers[0].oauth.token_url: must be https, or http to a loopback host"
    )
    provider["oauth"] = {"tokn_url": "https://a.example/t"}
    with pytest.raises(ConfigError, match="did you mean 'token_url'"):
        PalyraConfig.from_dict(
            {"providers": [provider], "models": [{"id": "m", "provider": "o"}]}
        )


def test_the_openai_preset_fills_what_is_not_given() -> None:
    """resolved() takes the preset's values for every field not set; explicit
    ones win, even when empty."""
    plain = OAuthConfig(preset="openai", client_id="app_1").resolved()
    assert plain.client_id == "app_1"
    assert plain.authorize_url == "https://auth.openai.com/authorize"
    assert plain.token_url == "https://auth0.openai.com/oauth/token"
    assert plain.revocation_url == "https://auth0.openai.com/oauth/revoke"
    assert plain.scopes == ("openid", "profile", "email", "offline_access")
    assert plain.extra_params == {"audience": "https://api.openai.com/v1"}
    assert "client_id" not in OPENAI_OAUTH_PRESET
    mine = OAuthConfig(
        preset="openai",
        token_url="http://127.0.0.1:8080/token",
        scopes=[],
        extra_params={},
    ).resolved()
    assert mine.token_url == "http://127.0.0.1:8080/token"
    assert mine.scopes == ()
    assert mine.extra_params == {}
    assert mine.authorize_url == plain.authorize_url
    assert mine.resolved() == mine
    no_preset = OAuthConfig(token_url="https://a.example/t")
    assert no_preset.resolved() is no_preset


@pytest.mark.parametrize(
    "url",
    [
        "https://auth.example.com/token",
        "http://127.0.0.1/token",
        "http://127.8.9.10:9000/token",
        "http://[::1]:8080/token",
        "http://localhost:5000/oauth/token",
    ],
)
def test_endpoints_are_https_or_loopback_http(url: str) -> None:
    """https anywhere, http only to this machine."""
    assert OAuthConfig(token_url=url, revocation_url=url).token_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://auth.example.com/token", "must be https, or http to a loopback host"),
        ("http://10.0.0.1/token", "must be https, or http to a loopback host"),
        ("ftp://auth.example.com/token", "must be an absolute http(s) URL"),
        ("/token", "must be an absolute http(s) URL"),
        ("https://user:pw@auth.example.com/token", "must not contain user info"),
        ("https://auth.example.com/token#x", "must not contain a query string or"),
        ("https://auth.example.com/token?a=1", "must not contain a query string or"),
        ("https://auth.example.com:70000/token", "is not a valid URL"),
        ("https://auth.example.com/to ken", "must be a URL of at most 2048 visible"),
        ("https://auth.exa\nmple.com/token", "must be a URL of at most 2048 visible"),
    ],
)
@pytest.mark.parametrize("field", ["authorize_url", "token_url", "revocation_url"])
def test_bad_endpoints_are_refused(field: str, url: str, message: str) -> None:
    """Each rule has its own message, on the field's path."""
    assert f"{field}: {message}" in _error(**{field: url})


def test_redirect_uri_is_https_or_loopback_http_on_any_port() -> None:
    """RFC 8252 §7.3: a loopback redirect may use any port; a query is
    allowed, a fragment is not."""
    for uri in (
        "http://127.0.0.1/callback",
        "http://127.0.0.1:53682/callback",
        "http://[::1]:1/cb",
        "http://localhost/cb?from=palyra",
        "https://app.example.com/oauth/callback",
    ):
        assert OAuthConfig(redirect_uri=uri).redirect_uri == uri
    assert "redirect_uri: must be https, or http to a loopback" in _error(
        redirect_uri="http://app.example.com/cb"
    )
    assert "redirect_uri: must not contain a fragment" in _error(
        redirect_uri="http://127.0.0.1:9/cb#frag"
    )
    assert "redirect_uri: must not contain user info" in _error(
        redirect_uri="https://u@app.example.com/cb"
    )


def test_scopes_are_trimmed_deduplicated_and_keep_their_order() -> None:
    """Empty entries are dropped; the first of repeated scopes stays."""
    config = OAuthConfig(scopes=[" openid ", "", "email", "openid", "  ", "x:y"])
    assert config.scopes == ("openid", "email", "x:y")


@pytest.mark.parametrize("scope", ["two words", 'quo"te', "back\\slash", "é", "\x7f"])
def test_a_scope_that_is_no_scope_token_is_named(scope: str) -> None:
    """RFC 6749 scope tokens are visible ASCII without '"' or '\\'."""
    text = _error(scopes=["openid", scope])
    assert "scopes: scope" in text
    assert repr(scope) in text
    assert "is not an RFC 6749 scope token" in text


@pytest.mark.parametrize(
    "key",
    [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "STATE",
    ],
)
def test_extra_params_cannot_replace_the_flows_own(key: str) -> None:
    """A replaced state or challenge would undo PKCE and CSRF protection."""
    text = _error(extra_params={"audience": "x", key: "mine"})
    assert f"extra_params: key {key!r} is set by palyra's authorization" in text


def test_extra_params_keys_are_parameter_names() -> None:
    """Keys follow RFC 6749's parameter-name rule; values are free text."""
    config = OAuthConfig(extra_params={"audience": "https://api.example/v1 x"})
    assert config.extra_params == {"audience": "https://api.example/v1 x"}
    assert "extra_params: key 'a b' is not a parameter name" in _error(
        extra_params={"a b": "x"}
    )
    assert "extra_params: key '' is not a parameter name" in _error(
        extra_params={"": "x"}
    )


def test_client_secret_env_is_a_name_never_a_secret() -> None:
    """A secret pasted in its place is refused without being echoed."""
    assert OAuthConfig(client_secret_env="MY_SECRET").client_secret_env == "MY_SECRET"
    text = _error(client_secret_env="s3cr3t-value-0123")
    assert "client_secret_env: must be an environment variable name" in text
    assert "s3cr3t" not in text


def test_client_id_is_trimmed_printable_ascii() -> None:
    """A blank or multi-line client id is a mistake."""
    assert OAuthConfig(client_id="  app_1 ").client_id == "app_1"
    assert "client_id: must be non-blank printable ASCII" in _error(client_id="  ")
    assert "client_id: must be non-blank printable ASCII" in _error(client_id="a\nb")


def test_unknown_presets_and_keys_are_refused() -> None:
    """The preset is one of a known few; unknown keys get a suggestion."""
    assert "preset:" in _error(preset="github")
    assert "did you mean 'scopes'" in _error(scope=["openid"])
