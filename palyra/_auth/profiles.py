"""What an auth profile is: `AuthProfile`, its checks, its health.

A profile names a credential of one provider: an API key, or OAuth tokens
with what refreshing them needs. It holds *references* to its secrets (vault
keys, `palyra._auth.vault.secret_key`), never the secrets. The profile file
keeps records (plain JSON dicts); `AuthProfile` is the checked, immutable view
of one, with its health worked out when it was read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._config import check_endpoint
from .._exceptions import InvalidRequestError
from .._utils import shown
from .vault import secret_key

__all__ = [
    "EXPIRING_WINDOW",
    "AuthHealth",
    "AuthProfile",
    "CredentialKind",
    "agent_of",
    "check_agent",
    "check_profile_id",
    "check_record",
    "check_scope",
    "health_of",
    "new_profile_id",
]

CredentialKind = Literal["api_key", "oauth"]
AuthHealth = Literal["ok", "expiring", "expired", "missing", "static", "refresh_failed"]

EXPIRING_WINDOW = 15 * 60.0
"""Seconds before expiry from which an OAuth profile's health is ``expiring``."""

_PROFILE_ID = re.compile(r"[a-z0-9._-]{1,128}")
# The same rule as a call's ``agent`` (`palyra._core.context`): the scope of a
# profile is matched against it.
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_NAME_MAX = 256
SECRET_FIELDS = ("api_key", "access_token", "refresh_token")


def check_profile_id(value: object, what: str = "profile_id") -> str:
    """A profile id, trimmed and lower-cased: 1-128 of ``a-z 0-9 . _ -``.

    Raises:
        InvalidRequestError: naming ``what``.
    """
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{what}: must be a string, got {type(value).__name__}"
        )
    text = value.strip().lower()
    if not _PROFILE_ID.fullmatch(text):
        raise InvalidRequestError(
            f"{what}: must be 1-128 characters of a-z, 0-9, '.', '_' or '-';"
            f" got {shown(value)}"
        )
    return text


def check_agent(value: object, what: str = "agent") -> str:
    """An agent id as calls give it (1-128 of letters, digits and ``._:@-``)."""
    if not isinstance(value, str) or not _AGENT.fullmatch(value):
        raise InvalidRequestError(
            f"{what}: must be 1-128 characters of letters, digits and . _ : @ -;"
            f" got {shown(value)}"
        )
    return value


def check_scope(value: object) -> str:
    """``"global"`` or ``"agent:<id>"``.

    Raises:
        InvalidRequestError: naming ``scope``.
    """
    if value == "global":
        return "global"
    if isinstance(value, str) and value.startswith("agent:"):
        return "agent:" + check_agent(value[6:], "scope")
    raise InvalidRequestError(
        f"scope: must be 'global' or 'agent:<agent id>'; got {shown(value)}"
    )


def agent_of(scope: str) -> str | None:
    """The agent a scope belongs to (None for ``global``)."""
    return scope[6:] if scope.startswith("agent:") else None


def new_profile_id(provider: str, name: str, taken: set[str]) -> str:
    """A readable, unused id: ``<provider>-<slug of name>``, numbered if taken."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64] or "default"
    base = f"{re.sub(r'[^a-z0-9._-]+', '-', provider)}-{slug}"[:120]
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


class AuthProfile(BaseModel):
    """One credential of one provider, as palyra keeps it (immutable).

    It holds references to secrets (``secret_refs``: the vault keys), never
    the secrets themselves.

    Attributes:
        id: Lower-case ``a-z 0-9 . _ -``, at most 128 characters.
        provider: The provider id it authenticates to (a configured provider,
            or ``openai`` / ``anthropic``).
        name: A human name; an agent's profile with the same provider and
            name overrides a global one for that agent.
        scope: ``"global"``, or ``"agent:<id>"`` (seen only by that agent).
        kind: ``"api_key"`` or ``"oauth"``.
        created_at: When it was first stored (UTC).
        updated_at: When it last changed, a refresh included (UTC).
        token_endpoint: OAuth: where tokens are refreshed.
        revocation_endpoint: OAuth: where tokens are revoked (RFC 7009), if any.
        client_id: OAuth: the client the tokens were issued to.
        client_secret_env: OAuth: the environment variable holding a
            confidential client's secret, if it has one.
        scopes: OAuth: the scopes asked for.
        expires_at: OAuth: when the access token expires, if the server said.
        refresh_failures: OAuth: failed refreshes since the last success.
        refresh_error: OAuth: what the last failed refresh met (a fixed,
            secret-free phrase).
        next_refresh_at: OAuth: no refresh is tried before this, after a
            failure (the backoff).
        health: ``ok``, ``expiring`` (15 minutes or less left), ``expired``,
            ``missing`` (a secret is gone from the vault), ``static`` (an API
            key) or ``refresh_failed``, as of when it was read.
        key_hint: API keys: the key masked, its first characters and last
            four (``sk-…a1b2``), to tell keys apart; never enough to use.
        default: The default profile of its provider in its scope (set by
            `Auth.set_default`): selected first, ahead of ``auth_order``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    provider: str
    name: str = Field(min_length=1, max_length=_NAME_MAX)
    scope: str = "global"
    kind: CredentialKind
    created_at: datetime
    updated_at: datetime
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    refresh_failures: int = Field(default=0, ge=0)
    refresh_error: str | None = None
    next_refresh_at: datetime | None = None
    key_hint: str | None = Field(default=None, max_length=16)
    default: bool = False
    health: AuthHealth = "static"

    @field_validator("id")
    @staticmethod
    def _id(value: str) -> str:
        if not _PROFILE_ID.fullmatch(value):
            raise ValueError("must be 1-128 characters of a-z, 0-9, '.', '_' or '-'")
        return value

    @field_validator("token_endpoint", "revocation_endpoint")
    @staticmethod
    def _endpoint(value: str | None) -> str | None:
        # Read back from a file anyone may edit: a refresh token must never
        # travel to an endpoint the configuration would have refused.
        return None if value is None else check_endpoint(value)

    @field_validator("scope")
    @staticmethod
    def _scope(value: str) -> str:
        try:
            return check_scope(value)
        except InvalidRequestError as exc:
            raise ValueError(str(exc)) from None

    @property
    def agent(self) -> str | None:
        """The agent this profile belongs to (None for a global profile)."""
        return agent_of(self.scope)

    @property
    def secret_refs(self) -> dict[str, str]:
        """The vault keys of this profile's secrets, by field."""
        fields = ("api_key",) if self.kind == "api_key" else SECRET_FIELDS[1:]
        return {field: secret_key(self.id, field) for field in fields}

    def record(self) -> dict[str, Any]:
        """The profile as the profile file keeps it (no health: that is read;
        ``default`` only when set, so older files read the same)."""
        record = self.model_dump(mode="json", exclude={"health"}, exclude_none=True)
        if not self.default:
            del record["default"]
        return record


def carried_over(old: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` replacing ``old`` in the file, keeping what only the file
    knows: when the profile was first stored, and whether it is its
    provider's default (set by another process, maybe, since it was read)."""
    if old is None:
        return record
    record = {**record, "created_at": old.get("created_at", record["created_at"])}
    record.pop("default", None)
    if old.get("default") is True:
        record["default"] = True
    return record


def profile_of(record: dict[str, Any], health: AuthHealth) -> AuthProfile:
    """The checked view of a record from the profile file."""
    return AuthProfile.model_validate({**record, "health": health})


def check_record(record: dict[str, Any]) -> None:
    """Raise ValueError (pydantic's) when a file's record is not a profile."""
    profile_of(record, "static")


def health_of(
    profile: AuthProfile, present: set[str], now: datetime | None = None
) -> AuthHealth:
    """A profile's health, given which of its secret fields the vault holds."""
    if profile.kind == "api_key":
        return "static" if "api_key" in present else "missing"
    if "access_token" not in present:
        return "missing"
    if profile.refresh_failures:
        return "refresh_failed"
    if profile.expires_at is None:
        return "ok"
    left = profile.expires_at - (now or datetime.now(UTC))
    if left <= timedelta(0):
        return "expired"
    if left <= timedelta(seconds=EXPIRING_WINDOW):
        return "expiring"
    return "ok"


def key_hint(key: str) -> str:
    """A key masked for display: its prefix (up to a dash in its first
    eight characters, else three) and its last four, when long enough that
    both leave most of it unseen (``sk-…a1b2``)."""
    if len(key) < 16:
        return "…" + key[-2:] if len(key) >= 10 else "…"
    dash = key.find("-", 0, 8)
    prefix = key[: dash + 1] if dash >= 0 else key[:3]
    return f"{prefix}…{key[-4:]}"
