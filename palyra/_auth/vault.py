"""The vault: where secrets live, behind one small protocol.

A secret is addressed by the profile it belongs to and a field of it
(``api_key``, ``access_token``, ``refresh_token``); `secret_key` turns the
pair into the keyring's user name, ``<profile id>:<field>``, under the service
name ``palyra``. Nothing here touches the keyring until a store is used, and a
keyring that is missing, locked or failing is a `palyra.VaultError` saying
which backend it is and how to fix it: palyra never falls back to plain text.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

from .._exceptions import VaultError

__all__ = ["KeyringSecretStore", "MemorySecretStore", "SecretStore", "secret_key"]

SERVICE = "palyra"
# What to do about a keyring that cannot be used, said in every VaultError.
_FIX = (
    "on Linux, install and unlock a Secret Service (gnome-keyring or KWallet,"
    " with D-Bus running); elsewhere, or on a headless server, choose a keyring"
    " backend (the PYTHON_KEYRING_BACKEND environment variable or keyring's"
    " config file), or pass secrets=palyra.MemorySecretStore() to Palyra"
)


def secret_key(profile_id: str, field: str) -> str:
    """The vault's name for one secret of a profile: ``<profile id>:<field>``."""
    return f"{profile_id}:{field}"


@runtime_checkable
class SecretStore(Protocol):
    """Where secrets are kept. Implementations must be safe to call from
    several threads; a failure is a `palyra.VaultError`, never a fallback."""

    def get(self, key: str) -> str | None:
        """The secret stored under ``key``, or None."""
        ...

    def set(self, key: str, secret: str) -> None:
        """Store ``secret`` under ``key``, replacing any previous one."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the secret under ``key``; False if there was none."""
        ...


class MemorySecretStore:
    """Secrets in this process's memory only: for tests, notebooks and
    processes that get their keys at start-up. Nothing is written anywhere."""

    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemorySecretStore({len(self._secrets)} secrets)"

    def get(self, key: str) -> str | None:
        """The secret stored under ``key``, or None."""
        with self._lock:
            return self._secrets.get(key)

    def set(self, key: str, secret: str) -> None:
        """Store ``secret`` under ``key``, replacing any previous one."""
        _check(key, secret)
        with self._lock:
            self._secrets[key] = secret

    def delete(self, key: str) -> bool:
        """Remove the secret under ``key``; False if there was none."""
        with self._lock:
            return self._secrets.pop(key, None) is not None


class KeyringSecretStore:
    """Secrets in the OS keyring (the `keyring` library), under the service
    name ``palyra`` (or ``service``).

    The keyring is loaded and asked only when a secret is first needed. Every
    failure of the backend is a `palyra.VaultError` naming the backend.

    Args:
        service: The keyring service name secrets are filed under.
    """

    def __init__(self, service: str = SERVICE) -> None:
        self.service = service

    def __repr__(self) -> str:
        return f"KeyringSecretStore(service={self.service!r})"

    def get(self, key: str) -> str | None:
        """The secret stored under ``key``, or None."""
        keyring = _keyring()
        try:
            return keyring.get_password(self.service, key)  # type: ignore[no-any-return]
        except Exception as exc:
            raise _vault_error("read", exc) from None

    def set(self, key: str, secret: str) -> None:
        """Store ``secret`` under ``key``, replacing any previous one."""
        _check(key, secret)
        keyring = _keyring()
        try:
            keyring.set_password(self.service, key, secret)
        except Exception as exc:
            raise _vault_error("store", exc) from None

    def delete(self, key: str) -> bool:
        """Remove the secret under ``key``; False if there was none."""
        keyring = _keyring()
        from keyring.errors import PasswordDeleteError

        try:
            if keyring.get_password(self.service, key) is None:
                return False
            keyring.delete_password(self.service, key)
        except PasswordDeleteError:
            return False  # gone meanwhile: what was asked for
        except Exception as exc:
            raise _vault_error("delete", exc) from None
        return True


def _check(key: str, secret: str) -> None:
    if not isinstance(key, str) or not key:
        raise TypeError("a vault key is a non-empty string")
    if not isinstance(secret, str):
        raise TypeError("a secret is a string")


def _keyring() -> Any:
    try:
        import keyring  # deferred: loading a backend is slow, and may prompt
    except ImportError as exc:  # pragma: no cover - keyring is a dependency
        raise VaultError(f"the keyring library cannot be imported; {_FIX}") from exc
    return keyring


def _vault_error(action: str, exc: Exception) -> VaultError:
    """A backend failure, named; its text is the library's, never a secret's
    (palyra never passes secrets in anything the backend echoes back)."""
    backend = _backend_name()
    # The exception is not chained: a backend's error may carry its arguments.
    return VaultError(
        f"the OS keyring ({backend}) could not {action} a secret:"
        f" {type(exc).__name__}; {_FIX}"
    )


def _backend_name() -> str:
    try:
        import keyring

        backend = keyring.get_keyring()
    except Exception:
        return "no usable backend"
    return f"{type(backend).__module__}.{type(backend).__name__}"
