"""Keeping profiles: which provider an operation is for, the profile it
makes, and storing it: secrets to the vault, then the profile to the file,
the first undone when the second fails (`Keeper`)."""

from __future__ import annotations

import logging
import os
from typing import Any

from .._config import PalyraConfig, ProviderConfig
from .._exceptions import AuthProfileError, InvalidRequestError
from .book import ProfileBook, now_utc
from .profiles import (
    AuthProfile,
    carried_over,
    check_profile_id,
    check_scope,
    new_profile_id,
    profile_of,
)

__all__ = ["Keeper", "bearer", "checked_key", "checked_name", "env_secret"]

logger = logging.getLogger("palyra")
_WELL_KNOWN = {"openai": "openai_compatible", "anthropic": "anthropic"}


class Keeper:
    """The providers of one configuration and the profiles of one book."""

    def __init__(self, config: PalyraConfig, book: ProfileBook) -> None:
        self._config = config
        self._book = book

    def provider(self, provider_id: str) -> ProviderConfig:
        if not isinstance(provider_id, str):
            raise InvalidRequestError(
                f"provider: must be a string, got {type(provider_id).__name__}"
            )
        wanted = provider_id.strip().lower()
        for provider in self._config.providers:
            if provider.id == wanted:
                if provider.kind == "deterministic":
                    raise InvalidRequestError(
                        f"provider: {wanted!r} is deterministic and takes no credential"
                    )
                return provider
        if wanted in _WELL_KNOWN:
            return ProviderConfig(id=wanted, kind=_WELL_KNOWN[wanted])
        known = sorted({p.id for p in self._config.providers} | set(_WELL_KNOWN))
        raise InvalidRequestError(
            f"provider: no provider {provider_id!r}; configured or known:"
            f" {', '.join(known)}"
        )

    def draft(
        self,
        provider: ProviderConfig,
        kind: str,
        profile_id: str | None,
        name: str | None,
        scope: str,
    ) -> AuthProfile:
        scope = check_scope(scope)
        name = checked_name(name)
        profiles = self._book.reload()
        if profile_id is None:
            pid = _generated_id(provider, name, scope, profiles)
        else:
            pid = check_profile_id(profile_id)
        old = profiles.get(pid)
        if old is not None and (old.provider, old.scope) != (provider.id, scope):
            raise InvalidRequestError(
                f"profile_id: {pid!r} already holds a credential of provider"
                f" {old.provider!r} ({old.scope}); choose another id or revoke it"
            )
        now = now_utc()
        return AuthProfile(
            id=pid,
            provider=provider.id,
            name=name,
            scope=scope,
            kind=kind,
            created_at=old.created_at if old else now,
            updated_at=now,
        )

    def save(self, profile: AuthProfile, secrets: dict[str, str]) -> AuthProfile:
        """Secrets to the vault, then the profile to the file; a failure of
        the second undoes the first. Under the profile's lock: a refresh, a
        revoke or another process's save of the same profile waits, so an
        undo never puts back a secret over one stored meanwhile."""
        with self._book.refresh_lock(profile.id):
            return self._save(profile, secrets)

    def _save(self, profile: AuthProfile, secrets: dict[str, str]) -> AuthProfile:
        vault = self._book.vault
        keys = {field: f"{profile.id}:{field}" for field in secrets}
        before = {field: vault.get(key) for field, key in keys.items()}
        written: list[str] = []
        try:
            for field, key in keys.items():
                vault.set(key, secrets[field])
                written.append(field)

            def change(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
                record = carried_over(records.get(profile.id), profile.record())
                records[profile.id] = record
                return record

            record = self._book.file.update(change)
        except BaseException:
            for field in written:
                restore(vault, keys[field], before[field])
            raise
        # A field the new credential lacks (no refresh token this time, an
        # API key become OAuth) must not linger to be used later.
        for field, key in profile.secret_refs.items():
            if field not in secrets:
                _quietly_delete(vault, key)
        for key in _other_kind_keys(profile):
            _quietly_delete(vault, key)
        self._book.keep(profile.id, secrets, profile.updated_at)
        self._book.changed()
        self._book.settled(profile.id)
        self._book.warm(profile.id)
        return self._book.with_health(profile_of(record, "static"))

    def mark_default(self, profile_id: str, on: bool) -> AuthProfile:
        """Make ``profile_id`` its provider's default in its scope (the
        previous one no longer is), or stop it being one."""

        def change(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
            record = records.get(profile_id)
            if record is None:
                raise AuthProfileError(
                    f"no auth profile {profile_id!r} in {self._book.file.path};"
                    " see client.auth.list() for the profiles there"
                )
            if on:
                for other in records.values():
                    same = (other["provider"], other.get("scope", "global"))
                    if same == (record["provider"], record.get("scope", "global")):
                        other.pop("default", None)
                record["default"] = True
            else:
                record.pop("default", None)
            return record

        record = self._book.file.update(change)
        self._book.changed()
        return self._book.with_health(profile_of(record, "static"))

    def delete(self, profile: AuthProfile) -> None:
        """The secrets first, then the profile: if the vault fails, the
        profile is still there for another try."""
        for key in profile.secret_refs.values():
            self._book.vault.delete(key)

        def change(records: dict[str, dict[str, Any]]) -> None:
            records.pop(profile.id, None)

        self._book.file.update(change)
        self._book.drop(profile.id)


def _generated_id(
    provider: ProviderConfig, name: str, scope: str, profiles: dict[str, AuthProfile]
) -> str:
    """``<provider>-<name>[-<agent>]``, the same for the same provider, name
    and scope (connecting again rotates in place); numbered when a profile of
    another name or scope already holds it."""
    suffix = "" if scope == "global" else "-" + scope[6:].lower()
    taken: set[str] = set()
    while True:
        pid = check_profile_id(
            new_profile_id(provider.id, name + suffix, taken)[:128], "profile_id"
        )
        old = profiles.get(pid)
        same = old is not None and (old.provider, old.scope, old.name.lower()) == (
            provider.id,
            scope,
            name.lower(),
        )
        if old is None or same:
            return pid
        taken.add(pid)


def restore(vault: Any, key: str, previous: str | None) -> None:
    """Put a vault entry back as it was before a failed operation."""
    try:
        if previous is None:
            vault.delete(key)
        else:
            vault.set(key, previous)
    except Exception as exc:  # the original failure is what the caller sees
        logger.error("palyra: could not undo a vault write (%s)", type(exc).__name__)


def _quietly_delete(vault: Any, key: str) -> None:
    try:
        vault.delete(key)
    except Exception as exc:
        logger.warning("palyra: could not delete %s (%s)", key, type(exc).__name__)


def _other_kind_keys(profile: AuthProfile) -> list[str]:
    if profile.kind == "api_key":
        return [f"{profile.id}:access_token", f"{profile.id}:refresh_token"]
    return [f"{profile.id}:api_key"]


def checked_key(key: object) -> str:
    """An API key as given, trimmed; the error never shows it."""
    if not isinstance(key, str):
        raise InvalidRequestError(f"key: must be a string, got {type(key).__name__}")
    key = key.strip()
    if not key:
        raise InvalidRequestError("key: is empty")
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise InvalidRequestError(
            "key: must be visible ASCII with no spaces (check for a pasted line"
            " break or quote)"
        )
    return key


def checked_name(name: object) -> str:
    """A profile's human name (``default`` when None)."""
    if name is None:
        return "default"
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise InvalidRequestError("name: must be 1-256 characters")
    if not name.isprintable():
        raise InvalidRequestError("name: must not hold control characters")
    return name.strip()


def bearer(provider: ProviderConfig) -> ProviderConfig:
    """The provider as an OAuth access token reaches it: with Bearer."""
    return provider.model_copy(update={"auth_header": "bearer"})


def env_secret(name: str | None) -> str | None:
    """A confidential client's secret, from the variable the profile names."""
    if name is None:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise AuthProfileError(
            f"environment variable {name} (the client secret) is not set"
        )
    return value
