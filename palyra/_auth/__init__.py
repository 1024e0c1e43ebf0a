"""Auth profiles: provider credentials whose secrets live in a vault.

What it is for: where palyra keeps credentials. The vault (``vault``) is a
`SecretStore`: the OS keyring by default (`KeyringSecretStore`), or memory
(`MemorySecretStore`) for tests and short-lived processes. Profile metadata
(never a secret) is one JSON file in palyra's home (`default_home`), read and
changed through `ProfileFile`, safe across threads and processes. Profiles,
API-key connect, OAuth and refresh are built on them (issue 10).

May import: the leaves (``_exceptions``, ``_utils``), ``_config``, the
keyring library (loaded on first use of a keyring store, never at import)
and the standard library's file locks (``fcntl``, ``msvcrt``, on first lock).
Never the core: auth joins a call through the core's hooks, wired by
``palyra._client``.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .store import ProfileFile, default_home
from .vault import KeyringSecretStore, MemorySecretStore, SecretStore, secret_key

__all__ = [
    "KeyringSecretStore",
    "MemorySecretStore",
    "ProfileFile",
    "SecretStore",
    "default_home",
    "secret_key",
]
