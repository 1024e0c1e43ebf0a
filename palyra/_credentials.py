"""Finding the credential for a provider, at call time and never at import.

Order: an inline ``api_key`` (discouraged), the ``api_key_env`` environment
variable (read on every call, so a rotated variable is used at once), then the
``auth_profile`` secret in the OS keyring (looked up once per client). A miss
raises `CredentialError` saying how to fix it.
"""

from __future__ import annotations

import os
import threading

from ._config import ProviderConfig
from ._exceptions import CredentialError

__all__: list[str] = []

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
