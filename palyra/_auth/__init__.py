"""Auth profiles: provider credentials whose secrets live in a vault.

What it is for: where palyra keeps credentials, how it gets them, and how a
call uses them. The vault (``vault``) is a `SecretStore`: the OS keyring by
default (`KeyringSecretStore`), or memory (`MemorySecretStore`). Profile
metadata (never a secret) is one JSON file in palyra's home (`default_home`),
read and changed through `ProfileFile` (``store``, on ``locks``), safe across
threads and processes; ``profiles`` says what a profile is (`AuthProfile`)
and how healthy. OAuth 2.0 authorization code with PKCE is pure (``oauth``:
settings, attempts, `AttemptBook`; ``oauth_wire``: the callback and the
endpoints' requests and answers). Every operation is a flow (``steps``) run
by a thin sync or async edge: ``remote`` talks to servers, ``refresh``
refreshes single-flight, ``keeping`` stores a profile with its secrets,
``signin`` runs OAuth sign-ins, ``service`` is ``client.auth`` (`Auth`) and
``login`` the loopback listener of `Auth.login_oauth`. On the call path, the shared
`ProfileBook` (``book``) answers from memory: ``resolve`` is the credential
lookup and the failure hooks, ``gate`` the refresh before a call and after
a 401.

May import: the leaves (``_exceptions``, ``_utils``), ``_config``, httpx (to
build requests and read answers; sending is the edges' ``send``, given by
``palyra._client`` from the core's drivers), the keyring library (loaded on
first use of a keyring store, never at import) and the standard library's
file locks (``fcntl``, ``msvcrt``, on first lock). Never the core: auth joins
a call through the core's hooks and lookup, wired by ``palyra._client``.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .book import ProfileBook, book_for
from .gate import CallGate
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
from .profiles import AuthHealth, AuthProfile, check_record
from .resolve import ProfileCredentials
from .service import Auth
from .steps import Exchange
from .store import ProfileFile, default_home
from .vault import KeyringSecretStore, MemorySecretStore, SecretStore, secret_key

__all__ = [
    "AttemptBook",
    "Auth",
    "AuthHealth",
    "AuthProfile",
    "CallGate",
    "Callback",
    "Exchange",
    "KeyringSecretStore",
    "MemorySecretStore",
    "OAuthAttempt",
    "OAuthClient",
    "ProfileBook",
    "ProfileCredentials",
    "ProfileFile",
    "SecretStore",
    "Tokens",
    "book_for",
    "callback_error",
    "check_record",
    "client_settings",
    "code_request",
    "default_home",
    "parse_callback",
    "read_tokens",
    "refresh_request",
    "revocation_request",
    "revocation_result",
    "secret_key",
    "start_attempt",
]
