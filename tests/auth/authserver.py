"""A real OAuth 2.0 authorization server on 127.0.0.1 for end-to-end tests.

authlib's Flask integration, served by werkzeug in a thread, with in-memory
clients, codes and tokens: RFC 6749 authorization code, RFC 7636 PKCE (S256,
required of public clients), the refresh_token grant with rotation (each
refresh issues a new refresh token and revokes the old pair) and RFC 7009
revocation::

    with AuthServer() as auth:
        location = auth.approve(authorize_url)  # plays the browser
        ...  # exchange the code in location at auth.token_url
        assert auth.valid(access_token)
        auth.fail_next("html")  # the next token request gets a page

Any ``http://127.0.0.1:<port>/<path>`` (or ``[::1]``, ``localhost``) is an
accepted redirect URI, as RFC 8252 §7.3 allows a native app. Two clients are
registered: the public ``palyra-test`` (no secret) and the confidential
``palyra-confidential`` (`CONFIDENTIAL_SECRET`, in the body or HTTP Basic).
"""

from __future__ import annotations

import collections
import functools
import hmac
import json
import os
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.models import (
    AuthorizationCodeMixin,
    ClientMixin,
    TokenMixin,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

__all__ = ["CONFIDENTIAL_ID", "CONFIDENTIAL_SECRET", "PUBLIC_ID", "AuthServer"]

PUBLIC_ID = "palyra-test"
CONFIDENTIAL_ID = "palyra-confidential"
CONFIDENTIAL_SECRET = "palyra-confidential-secret-0123456789"
USER = "user-1"
CODE_TTL = 600.0
TOKEN_FAILURES = frozenset({"html", "500", "no_access_token", "slow"})
REVOCATION_FAILURES = frozenset({"revoke_500"})
_SLOW = 0.5
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
# Each client may use only its own (Client.check_endpoint_auth_method).
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


# ------------------------------------------------------------------- models


@dataclass
class Client(ClientMixin):
    """A registered client: public (``none``) or with a secret."""

    client_id: str
    client_secret: str | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # a redirect_uri must be sent

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""  # every scope asked for is granted

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        parts = urlsplit(redirect_uri)
        return (
            parts.scheme == "http"
            and parts.hostname in _LOOPBACK
            and not parts.fragment
            and not parts.username
        )

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret is None:
            return False
        return hmac.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code(AuthorizationCodeMixin):
    """An authorization code, with its PKCE challenge."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    issued_at: float = field(default_factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token(TokenMixin):
    """An access token and its refresh token, revoked as a pair or alone."""

    client: Client
    user: str
    access_token: str
    refresh_token: str | None
    scope: str
    expires_in: int
    issued_at: float = field(default_factory=time.time)
    access_revoked: bool = False
    refresh_revoked: bool = False
    forced_expired: bool = False

    def check_client(self, client: Client) -> bool:
        return bool(client.client_id == self.client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.forced_expired or time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Client:
        return self.client


# ------------------------------------------------------------------- grants


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _AUTH_METHODS

    def save_authorization_code(self, code: str, req: Any) -> None:
        data = req.payload.data
        self.server.fixture._save_code(
            Code(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.scope or "",
                user=req.user,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        return self.server.fixture._find_code(code, client)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.fixture._use_code(authorization_code)

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.user


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh, a new one

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = self.server.fixture._by_refresh.get(refresh_token)
        if token is None or token.refresh_revoked:
            return None
        return token

    def authenticate_user(self, credential: Token) -> str:
        return credential.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        refresh_token.access_revoked = refresh_token.refresh_revoked = True


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = _AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        fixture = self.server.fixture
        lookups = [fixture._by_access, fixture._by_refresh]
        if token_type_hint == "refresh_token":
            lookups.reverse()
        for table in lookups:
            if token_string in table:
                return table[token_string]
        return None

    def revoke_token(self, token: Token, req: Any) -> None:
        # Revoking a refresh token ends its access token too (RFC 7009 §2.1).
        token.access_revoked = True
        if req.form.get("token_type_hint") != "access_token":
            token.refresh_revoked = True


class _Server(AuthorizationServer):
    def __init__(self, app: Flask, fixture: AuthServer) -> None:
        self.fixture = fixture
        super().__init__(app, query_client=fixture._client, save_token=fixture._save)


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass  # werkzeug's access log would land in every test's output


# ------------------------------------------------------------------ fixture


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once: an httpx.Client builds its own (50 ms) unless given one,
    # and the browser speaks plain http anyway.
    return ssl.create_default_context()


_INSECURE = "AUTHLIB_INSECURE_TRANSPORT"
_insecure_lock = threading.Lock()
_insecure_users = 0
_insecure_saved: str | None = None


def _insecure_on() -> None:
    """authlib refuses http unless AUTHLIB_INSECURE_TRANSPORT is set (older
    releases even to loopback): it is set while any server runs."""
    global _insecure_users, _insecure_saved
    with _insecure_lock:
        if not _insecure_users:
            _insecure_saved = os.environ.get(_INSECURE)
        _insecure_users += 1
        os.environ[_INSECURE] = "1"


def _insecure_off() -> None:
    """The last server to stop restores what the environment had."""
    global _insecure_users
    with _insecure_lock:
        _insecure_users -= 1
        if _insecure_users:
            return
        if _insecure_saved is None:
            os.environ.pop(_INSECURE, None)
        else:
            os.environ[_INSECURE] = _insecure_saved


class AuthServer:
    """An OAuth 2.0 authorization server on 127.0.0.1, as a context manager.

    Attributes:
        client_id: The public client's id (`PUBLIC_ID`).
        access_ttl: ``expires_in`` of the access tokens it issues, settable.
        token_requests: Token-endpoint requests by ``grant_type``.
        revocations: The ``token_type_hint`` of each revocation request
            (``""`` when none was sent).
        requests: ``(path, form)`` of every token and revocation request.
        errors: Exceptions raised while serving (a test should find none).
    """

    client_id = PUBLIC_ID

    def __init__(self, *, access_ttl: int = 3600) -> None:
        self.access_ttl = access_ttl
        self.token_requests: collections.Counter[str] = collections.Counter()
        self.revocations: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.errors: list[BaseException] = []
        self._clients = {
            PUBLIC_ID: Client(PUBLIC_ID),
            CONFIDENTIAL_ID: Client(CONFIDENTIAL_ID, CONFIDENTIAL_SECRET),
        }
        self._codes: dict[str, Code] = {}
        self._used_codes: dict[str, Token] = {}  # code -> what it was given
        self._by_access: dict[str, Token] = {}
        self._by_refresh: dict[str, Token] = {}
        self._failures: collections.deque[str] = collections.deque()
        self._delay = 0.0
        # One token or revocation request at a time: authlib looks a code or
        # refresh token up and retires it in two steps, so two requests
        # racing with one would otherwise both win.
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._http: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._browser: httpx.Client | None = None
        self.app = self._build_app()

    # -- lifecycle

    def __enter__(self) -> AuthServer:
        """Serve on a free port of 127.0.0.1 in a daemon thread."""
        _insecure_on()
        self._running = True
        self._http = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"authserver-{self._http.server_port}",
            daemon=True,
        )
        self._thread.start()
        self._browser = httpx.Client(
            follow_redirects=False, timeout=5, verify=_tls_context()
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving and restore the environment."""
        if self._browser is not None:
            self._browser.close()
            self._browser = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join()
        self._http = self._thread = None
        if self._running:
            self._running = False
            _insecure_off()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._http is None:
            raise RuntimeError("AuthServer not started")
        return f"http://127.0.0.1:{self._http.server_port}"

    @property
    def authorize_url(self) -> str:
        """The authorization endpoint."""
        return f"{self.url}/authorize"

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return f"{self.url}/token"

    @property
    def revocation_url(self) -> str:
        """The RFC 7009 revocation endpoint."""
        return f"{self.url}/revoke"

    # -- what tests do

    def approve(self, authorize_url: str, *, deny: bool = False) -> str:
        """Play the browser: open ``authorize_url``, consent (or refuse) and
        return where the server redirects: the redirect URI with ``code``
        and ``state``, or with ``error=access_denied`` and ``state``."""
        browser = self._browser
        if browser is None:
            raise RuntimeError("AuthServer not started")
        page = browser.get(authorize_url)
        if page.status_code == 302:
            return page.headers["location"]  # refused before consent
        if page.status_code != 200:
            raise AssertionError(f"authorize: HTTP {page.status_code}: {page.text}")
        consent = "deny" if deny else "allow"
        answer = browser.post(authorize_url, data={"consent": consent})
        if answer.status_code != 302:
            raise AssertionError(f"consent: HTTP {answer.status_code}: {answer.text}")
        return answer.headers["location"]

    def valid(self, access_token: str) -> bool:
        """Whether ``access_token`` was issued here, and is neither revoked
        nor expired (the check a resource server makes)."""
        with self._lock:
            token = self._by_access.get(access_token)
            return (
                token is not None and not token.is_revoked() and not token.is_expired()
            )

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far invalid, as time would; their
        refresh tokens still work."""
        with self._lock:
            for token in self._by_access.values():
                token.forced_expired = True

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Make the next ``count`` token requests fail: ``"html"`` (a 200
        page), ``"500"``, ``"no_access_token"`` (200 JSON without one) or
        ``"slow"`` (answered after 0.5 s); or revocation requests:
        ``"revoke_500"``."""
        if kind not in TOKEN_FAILURES | REVOCATION_FAILURES:
            raise ValueError(f"unknown failure {kind!r}")
        with self._state_lock:
            self._failures.extend([kind] * count)

    def set_delay(self, seconds: float) -> None:
        """Answer every token request ``seconds`` late (0 to stop)."""
        self._delay = seconds

    # -- the web application

    def _build_app(self) -> Flask:
        app = Flask(f"authserver-{id(self)}")
        server = _Server(app, self)
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **_: "at-" + secrets.token_urlsafe(24),
                lambda **_: "rt-" + secrets.token_urlsafe(24),
                lambda client, grant_type: self.access_ttl,
            ),
        )
        server.register_grant(_CodeGrant, [CodeChallenge(required=True)])
        server.register_grant(_RefreshGrant)
        server.register_endpoint(_Revocation)

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            try:
                grant = server.get_consent_grant(end_user=USER)
            except OAuth2Error as error:
                return server.handle_error_response(None, error)
            if request.method == "GET":
                return (  # a real browser's consent: two buttons
                    "<html><body><form method='post'><p>Allow palyra?</p>"
                    "<button name='consent' value='allow'>Allow</button>"
                    "<button name='consent' value='deny'>Deny</button>"
                    "</form></body></html>"
                )
            user = USER if request.form.get("consent") == "allow" else None
            return server.create_authorization_response(grant=grant, grant_user=user)

        @app.get("/favicon.ico")
        def favicon() -> Any:  # asked for by a real browser on the consent page
            return Response(status=204)

        @app.post("/token")
        def token() -> Any:
            self._record("/token")
            failure = self._next_failure(TOKEN_FAILURES)
            if failure == "slow" or self._delay:
                time.sleep(self._delay or _SLOW)
            if failure in ("html", "500", "no_access_token"):
                return _failure(failure)
            with self._lock:
                return server.create_token_response()

        @app.post("/revoke")
        def revoke() -> Any:
            self._record("/revoke")
            if self._next_failure(REVOCATION_FAILURES):
                return Response("revocation is down", 500, mimetype="text/plain")
            with self._lock:
                return server.create_endpoint_response("revocation")

        @app.errorhandler(Exception)
        def crashed(error: Exception) -> Any:
            self.errors.append(error)
            return Response("authserver crashed", 500, mimetype="text/plain")

        return app

    def _record(self, path: str) -> None:
        form = request.form.to_dict()
        with self._state_lock:
            self.requests.append((path, form))
            if path == "/token":
                self.token_requests[form.get("grant_type", "")] += 1
            else:
                self.revocations.append(form.get("token_type_hint", ""))

    def _next_failure(self, kinds: frozenset[str]) -> str | None:
        with self._state_lock:
            for kind in self._failures:
                if kind in kinds:
                    self._failures.remove(kind)
                    return kind
        return None

    # -- storage, for the grants (called under self._lock)

    def _client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def _save(self, token: dict[str, Any], req: Any) -> None:
        issued = Token(
            client=req.client,
            user=req.user,
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            scope=token.get("scope", ""),
            expires_in=token.get("expires_in", 0),
        )
        self._by_access[issued.access_token] = issued
        if issued.refresh_token:
            self._by_refresh[issued.refresh_token] = issued
        if req.payload.data.get("grant_type") == "authorization_code":
            self._used_codes[req.payload.data["code"]] = issued

    def _save_code(self, code: Code) -> None:
        self._codes[code.code] = code

    def _find_code(self, code: str, client: Client) -> Code | None:
        if code in self._used_codes:
            # RFC 6749 §4.1.2: a code used twice revokes what it was given.
            used = self._used_codes[code]
            used.access_revoked = used.refresh_revoked = True
            return None
        found = self._codes.get(code)
        if found is None or found.client_id != client.client_id:
            return None
        if time.time() >= found.issued_at + CODE_TTL:
            return None
        return found

    def _use_code(self, code: Code) -> None:
        self._codes.pop(code.code, None)  # _save remembered what it gave


def _failure(kind: str) -> Response:
    if kind == "html":
        page = "<html><body><h1>Sign in to continue</h1></body></html>"
        return Response(page, 200, mimetype="text/html")
    if kind == "500":
        return Response("Internal Server Error", 500, mimetype="text/plain")
    body = json.dumps({"token_type": "Bearer", "expires_in": 3600})
    return Response(body, 200, mimetype="application/json")
