"""Auth profiles: provider credentials whose secrets live in a vault.

What it is for: where palyra keeps credentials. The vault (``vault``) is a
`SecretStore`: the OS keyring by default (`KeyringSecretStore`), or memory
(`MemorySecretStore`) for tests and short-lived processes. Profiles, API-key
connect, OAuth and refresh are built on it (issue 10).

May import: the leaves (``_exceptions``, ``_utils``), ``_config`` and the
keyring library (loaded on first use of a keyring store, never at import).
Never the core: auth joins a call through the core's hooks, wired by
``palyra._client``.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .vault import KeyringSecretStore, MemorySecretStore, SecretStore, secret_key

__all__ = ["KeyringSecretStore", "MemorySecretStore", "SecretStore", "secret_key"]
