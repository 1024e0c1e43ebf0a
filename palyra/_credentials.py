"""Finding the credential for a provider, at call time and never at import.

The order, first match wins: the provider's ``auth_profile`` (an explicit
profile), its ``api_key_env`` environment variable (read on every call, so a
rotated variable is used at once; unset or empty counts as not given), its
inline ``api_key`` (discouraged: it warns), then the auth profiles connected
for the provider (`palyra._auth` selects one). A miss raises
`CredentialError` saying how to fix it.

Every credential is checked when it is resolved, whoever resolved it: one that
holds a control, whitespace or non-ASCII character cannot be sent in a header,
and the error the HTTP stack would raise quotes the header, key included. The
`CredentialError` raised instead says what is wrong and never shows the key.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from typing import Protocol

from ._config import ProviderConfig
from ._exceptions import CredentialError

__all__: list[str] = []

Lookup = Callable[[ProviderConfig, str | None, str | None], str | None]
"""Takes a provider, the agent a call is for and the auth profile the call
asks for (a scheduled job's, or None); returns the credential."""


class Profiles(Protocol):
    """What the credential lookup needs of auth profiles (`palyra._auth`)."""

    def named(self, provider: ProviderConfig, agent: str | None) -> str:
        """The secret of the provider's ``auth_profile`` as ``agent`` sees it."""
        ...

    def selected(self, provider: ProviderConfig, agent: str | None) -> str | None:
        """The secret of the profile chosen among the provider's connected
        ones that ``agent`` sees, or None when there is none."""
        ...

    def chosen(
        self, profile_id: str, provider: ProviderConfig, agent: str | None
    ) -> str | None:
        """The secret of profile ``profile_id`` when it is ``provider``'s
        (None when it is another provider's)."""
        ...


class CredentialResolver:
    """The default credential lookup of a `Palyra` client (see the module
    docstring for the order)."""

    def __init__(self, profiles: Profiles) -> None:
        self._profiles = profiles

    def __call__(
        self,
        provider: ProviderConfig,
        agent: str | None = None,
        profile: str | None = None,
    ) -> str | None:
        """The credential for ``provider``, or None when it takes none; the
        call's own ``profile`` first, when it is this provider's."""
        if provider.effective_auth_header == "none":  # deterministic: always none
            return None
        if profile is not None:
            found = self._profiles.chosen(profile, provider, agent)
            if found is not None:
                return found
        if provider.auth_profile is not None:
            return self._profiles.named(provider, agent)
        if provider.api_key_env is not None:
            value = os.environ.get(provider.api_key_env, "").strip()
            if value:
                return value
        if provider.api_key is not None:
            return provider.api_key.get_secret_value()
        found = self._profiles.selected(provider, agent)
        if found is not None:
            return found
        if provider.api_key_env is not None:
            raise CredentialError(
                f"environment variable {provider.api_key_env} is not set or"
                " empty, and no auth profile is connected for this provider;"
                " export it, or connect one (client.auth.connect_api_key)",
                provider=provider.id,
            )
        raise CredentialError(
            "no credential configured; set api_key_env (e.g. OPENAI_API_KEY),"
            " connect an auth profile (client.auth.connect_api_key), or set"
            " auth_header = 'none' for an upstream that needs none",
            provider=provider.id,
        )


def checked(lookup: Lookup, injected: bool) -> Lookup:
    """``lookup`` with every credential it returns checked (see the module
    docstring); ``injected`` says it is the caller's ``credentials=``."""

    def resolve(
        provider: ProviderConfig, agent: str | None = None, profile: str | None = None
    ) -> str | None:
        value = lookup(provider, agent, profile)
        # The usual key passes three C-level tests; the rest explains a failure.
        if value is None or (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and " " not in value
        ):
            return value
        raise CredentialError(
            f"the credential from {_source(provider, injected)} {_problem(value)};"
            " a key is visible ASCII with no spaces (check for a pasted line break)",
            provider=provider.id,
        )

    return resolve


def _problem(value: object) -> str:
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    for char in value:
        if not char.isascii():
            kind = unicodedata.category(char)
            what = "an invisible" if kind.startswith(("C", "Z")) else "a"
            return f"contains {what} non-ASCII character (U+{ord(char):04X})"
        if char.isspace():
            return "contains whitespace"
        if not char.isprintable():
            return f"contains a control character (U+{ord(char):04X})"
    return "is not a valid credential"


def _source(provider: ProviderConfig, injected: bool) -> str:
    if injected:
        return "the credentials= lookup"
    if provider.auth_profile is not None:
        return f"auth profile {provider.auth_profile!r}"
    if provider.api_key_env is not None and os.environ.get(provider.api_key_env):
        return f"environment variable {provider.api_key_env}"
    if provider.api_key is not None:
        return "the inline api_key"
    return "an auth profile"
