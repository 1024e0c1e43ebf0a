"""Auth profiles: provider credentials whose secrets live in a vault.

What it is for: where palyra keeps credentials, and how it gets them. The
vault (``vault``) is a `SecretStore`: the OS keyring by default
(`KeyringSecretStore`), or memory (`MemorySecretStore`) for tests and
short-lived processes. OAuth 2.0 authorization code with PKCE is pure
(``oauth``: the client's settings, the attempts and `AttemptBook`;
``oauth_wire``: the callback and the token and revocation endpoints' requests
and answers): whoever holds a transport sends what it builds. Profiles,
API-key connect and refresh are built on them (issue 10).

May import: the leaves (``_exceptions``, ``_utils``), ``_config``, httpx (to
build requests and read answers, never to send) and the keyring library
(loaded on first use of a keyring store, never at import). Never the core:
auth joins a call through the core's hooks, wired by ``palyra._client``.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .oauth import (
    AttemptBook,
    OAuthAttempt,
    OAuthClient,
    client_settings,
    start_attempt,
)
from .oauth_wire import (
    Callback,
    Tokens,
    callback_error,
    code_request,
    parse_callback,
    read_tokens,
    refresh_request,
    revocation_request,
    revocation_result,
)
from .vault import KeyringSecretStore, MemorySecretStore, SecretStore, secret_key

__all__ = [
    "AttemptBook",
    "Callback",
    "KeyringSecretStore",
    "MemorySecretStore",
    "OAuthAttempt",
    "OAuthClient",
    "SecretStore",
    "Tokens",
    "callback_error",
    "client_settings",
    "code_request",
    "parse_callback",
    "read_tokens",
    "refresh_request",
    "revocation_request",
    "revocation_result",
    "secret_key",
    "start_attempt",
]
