"""Finding the credential for a provider, at call time and never at import.

Order: an inline ``api_key`` (discouraged), the ``api_key_env`` environment
variable (read on every call, so a rotated variable is used at once), then the
``auth_profile`` secret in the OS keyring (looked up once per client). A miss
raises `CredentialError` saying how to fix it.

Every credential is checked when it is resolved, whoever resolved it: one that
holds a control, whitespace or non-ASCII character cannot be sent in a header,
and the error the HTTP stack would raise quotes the header, key included. The
`CredentialError` raised instead says what is wrong and never shows the key.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Callable

from ._config import ProviderConfig
from ._exceptions import CredentialError

__all__: list[str] = []

Lookup = Callable[[ProviderConfig], str | None]

KEYRING_SERVICE = "palyra"


class CredentialResolver:
    """The default credential lookup of a `Palyra` client."""

    def __init__(self) -> None:
        self._profiles: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, provider: ProviderConfig) -> str | None:
        """The credential for ``provider``, or None when it takes none."""
        if provider.effective_auth_header == "none":  # deterministic: always none
            return None
        if provider.api_key is not None:
            return provider.api_key.get_secret_value()
        if provider.api_key_env is not None:
            value = os.environ.get(provider.api_key_env, "").strip()
            if not value:
                raise CredentialError(
                    f"environment variable {provider.api_key_env} is not set or"
                    " empty; export it or configure an auth_profile",
                    provider=provider.id,
                )
            return value
        if provider.auth_profile is not None:
            return self._profile(provider, provider.auth_profile)
        raise CredentialError(
            "no credential configured; set api_key_env (e.g. OPENAI_API_KEY) or"
            " auth_profile, or auth_header = 'none' for an upstream that needs none",
            provider=provider.id,
        )

    def _profile(self, provider: ProviderConfig, profile: str) -> str:
        with self._lock:
            cached = self._profiles.get(profile)
            if cached is not None:
                return cached
            import keyring  # deferred: loading a keyring backend is slow

            secret = keyring.get_password(KEYRING_SERVICE, f"auth-profile:{profile}")
            if not secret:
                raise CredentialError(
                    f"auth profile {profile!r} has no secret in the OS keyring"
                    f" (service {KEYRING_SERVICE!r})",
                    provider=provider.id,
                )
            self._profiles[profile] = secret
            return secret


def checked(lookup: Lookup, injected: bool) -> Lookup:
    """``lookup`` with every credential it returns checked (see the module
    docstring); ``injected`` says it is the caller's ``credentials=``."""

    def resolve(provider: ProviderConfig) -> str | None:
        value = lookup(provider)
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
    if provider.api_key is not None:
        return "the inline api_key"
    if provider.api_key_env is not None:
        return f"environment variable {provider.api_key_env}"
    return f"auth profile {provider.auth_profile!r}"
