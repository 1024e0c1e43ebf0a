"""How a provider's OAuth 2.0 authorization server is reached: `OAuthConfig`,
the ``oauth`` table of a provider entry, and its presets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, field_validator

from .._addresses import is_loopback_host
from .._utils import shown
from .base import ENV_NAME, ConfigModel

__all__ = [
    "OAUTH_PRESETS",
    "OPENAI_OAUTH_PRESET",
    "RESERVED_PARAMS",
    "OAuthConfig",
    "check_endpoint",
]

OPENAI_OAUTH_PRESET: Mapping[str, Any] = MappingProxyType(
    {
        "authorize_url": "https://auth.openai.com/authorize",
        "token_url": "https://auth0.openai.com/oauth/token",
        "revocation_url": "https://auth0.openai.com/oauth/revoke",
        "scopes": ("openid", "profile", "email", "offline_access"),
        "extra_params": MappingProxyType({"audience": "https://api.openai.com/v1"}),
    }
)
"""The endpoints, scopes and parameters OpenAI's authorization server takes.
No ``client_id``: the user registers their own client and supplies it."""

OAUTH_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {"openai": OPENAI_OAUTH_PRESET}
)

RESERVED_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)
"""Authorize-URL parameters palyra sets itself: ``extra_params`` may not
replace them (a replaced ``state`` or challenge would undo the protection)."""

# RFC 6749 appendix A: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 6749 appendix A: a parameter name is 1*( "-" / "." / "_" / DIGIT / ALPHA ).
_PARAM_NAME = re.compile(r"[A-Za-z0-9._-]+")
# RFC 6749 appendix A: client_id = *VSCHAR (visible ASCII and space).
_CLIENT_ID = re.compile(r"[\x20-\x7e]+")
# Visible ASCII only: urlsplit silently drops tabs and line breaks, so a URL
# with one would be checked as a different URL than the one written.
_URL_CHARS = re.compile(r"[\x21-\x7e]+")
_MAX_URL = 2048


class OAuthConfig(ConfigModel):
    """The ``oauth`` table of a provider: where its OAuth 2.0 authorization
    server is and which client palyra is to it (authorization code + PKCE).

    Args:
        preset: ``"openai"`` fills every field not given from
            `OPENAI_OAUTH_PRESET` (see `resolved`); explicit fields win.
        client_id: The OAuth client's id, registered with the server.
        client_secret_env: Name of the environment variable holding a
            confidential client's secret (never the secret itself).
        authorize_url: The authorization endpoint the user's browser opens.
        token_url: The token endpoint (code exchange and refresh).
        revocation_url: The RFC 7009 revocation endpoint, if the server has one.
        scopes: Scopes to ask for, in order; duplicates are dropped.
        redirect_uri: Where the server sends the browser back: ``https``, or
            ``http`` to a loopback host on any port (RFC 8252 §7.3).
        extra_params: More authorize-URL parameters (``audience``...); they may
            not replace the ones palyra sets (`RESERVED_PARAMS`).

    Endpoints are absolute ``https`` URLs, or ``http`` to a loopback host,
    without user info, query or fragment.
    """

    preset: Literal["openai"] | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    scopes: tuple[str, ...] = ()
    redirect_uri: str | None = None
    extra_params: dict[str, str] = Field(default_factory=dict)

    def resolved(self) -> OAuthConfig:
        """This config with its preset's values filled in where a field was
        not given (fields given explicitly, even empty, win)."""
        if self.preset is None:
            return self
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return OAuthConfig(**{**OAUTH_PRESETS[self.preset], **given})

    @field_validator("client_id")
    @staticmethod
    def _check_client_id(value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not _CLIENT_ID.fullmatch(value):
            raise ValueError("must be non-blank printable ASCII")
        return value

    @field_validator("client_secret_env")
    @staticmethod
    def _check_env_name(value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError("must be an environment variable name, not a secret")
        return value

    @field_validator("authorize_url", "token_url", "revocation_url")
    @staticmethod
    def _check_endpoint(value: str | None) -> str | None:
        return None if value is None else check_endpoint(value)

    @field_validator("redirect_uri")
    @staticmethod
    def _check_redirect(value: str | None) -> str | None:
        if value is None:
            return None
        # A query is allowed (RFC 6749 §3.1.2); a fragment never is.
        if _split(value).fragment:
            raise ValueError("must not contain a fragment")
        return value

    @field_validator("scopes")
    @staticmethod
    def _check_scopes(value: tuple[str, ...]) -> tuple[str, ...]:
        kept: dict[str, None] = {}
        for scope in value:
            token = scope.strip()
            if not token:
                continue
            if not _SCOPE_TOKEN.fullmatch(token):
                raise ValueError(
                    f"scope {shown(token)} is not an RFC 6749 scope token"
                    " (visible ASCII without spaces, '\"' or '\\')"
                )
            kept[token] = None
        return tuple(kept)

    @field_validator("extra_params")
    @staticmethod
    def _check_params(value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _PARAM_NAME.fullmatch(key):
                raise ValueError(
                    f"key {shown(key)} is not a parameter name"
                    " (letters, digits, '-', '.' and '_')"
                )
            if key.lower() in RESERVED_PARAMS:
                raise ValueError(
                    f"key {key!r} is set by palyra's authorization"
                    " request and cannot be overridden"
                )
        return value


def check_endpoint(url: str) -> str:
    """An OAuth endpoint as given: https, or http to loopback; no userinfo,
    query or fragment.

    Raises:
        ValueError: saying what is wrong.
    """
    parts = _split(url)
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query string or fragment")
    return url


def _split(url: str) -> SplitResult:
    """The parts of an endpoint or redirect URL, once the rules every one of
    them keeps are checked: absolute, https (or http to loopback), no user
    info, a valid port."""
    if len(url) > _MAX_URL or not _URL_CHARS.fullmatch(url):
        raise ValueError(
            f"must be a URL of at most {_MAX_URL} visible ASCII characters"
            " (percent-encode anything else)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port range
    except ValueError:
        raise ValueError("is not a valid URL (a bad port or IPv6 address)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain user info (put credentials elsewhere)")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must be https, or http to a loopback host")
    return parts
