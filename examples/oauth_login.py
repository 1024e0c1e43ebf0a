"""Sign in with OAuth 2.0 (authorization code + PKCE), chat, refresh, revoke.

The script starts its own server on 127.0.0.1: a small demo OAuth 2.0
authorization server written with the standard library (``http.server``),
which is also the model provider the tokens are for. It is a demo, not an
authorization server to deploy: it knows one public client, approves every
sign-in without asking anyone, and keeps everything in memory. It does
what palyra relies on:

- ``GET /authorize``: checks the client, the redirect URI (http to
  loopback) and the PKCE challenge (S256 only), then sends the browser back
  to the redirect URI with a single-use code and the ``state``;
- ``POST /token``: ``authorization_code`` (the PKCE verifier must match the
  challenge) and ``refresh_token``, which rotates: every refresh issues a new
  refresh token and kills the old one (RFC 6749, RFC 7636);
- ``POST /revoke``: RFC 7009 revocation of a refresh token and its access
  tokens;
- ``POST /v1/chat/completions``: an OpenAI-compatible chat that takes a
  live access token with Bearer.

``client.auth.login_oauth`` listens on 127.0.0.1 for the redirect. The
browser is played by a function given as ``open_browser=``: in a thread, as a
real browser runs beside the program, it opens the authorize URL with httpx
(``follow_redirects=False``), then follows the redirect to palyra's listener.

Run it with::

    python examples/oauth_login.py            # tokens in the OS keyring
    python examples/oauth_login.py --memory   # tokens in memory only

``PALYRA_EXAMPLE_MEMORY=1`` does the same as ``--memory``. With the OS
keyring, the tokens are written under the service name ``palyra`` and
deleted by the revoke at the end; a keyring that cannot be used stops the
script with palyra's ``VaultError``. The profile file goes to a temporary
directory, never to your real palyra home.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

import palyra

CLIENT_ID = "demo-app"
PROFILE = "demo-me"
HELLO = [{"role": "user", "content": "Hello with an OAuth token"}]

# -------------------------------------------- the demo authorization server


@dataclass
class Grant:
    """What a code or a token was issued for."""

    client_id: str
    scope: str
    expires: float
    redirect_uri: str = ""
    challenge: str = ""
    refresh_token: str = ""  # for an access token: the refresh token behind it


@dataclass
class DemoAuthority:
    """The authorization server's state: codes and live tokens, in memory."""

    codes: dict[str, Grant] = field(default_factory=dict)
    access: dict[str, Grant] = field(default_factory=dict)
    refresh: dict[str, Grant] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)  # what happened, in order
    lifetime: int = 3600  # seconds the access tokens issued now live
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        """The browser's visit to /authorize: a redirect, or an error page."""
        redirect = query.get("redirect_uri", "")
        parts = urlsplit(redirect)
        if query.get("client_id") != CLIENT_ID:
            return 400, {"error": "invalid_client"}
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            return 400, {"error": "invalid_request", "error_description": "redirect"}
        if query.get("response_type") != "code":
            return 302, self._back(redirect, query, error="unsupported_response_type")
        if query.get("code_challenge_method") != "S256" or not query.get(
            "code_challenge"
        ):
            return 302, self._back(redirect, query, error="invalid_request")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = Grant(
                client_id=CLIENT_ID,
                scope=query.get("scope", ""),
                expires=time.time() + 60,
                redirect_uri=redirect,
                challenge=query["code_challenge"],
            )
            self.log.append("authorize: code issued")
        return 302, self._back(redirect, query, code=code)

    @staticmethod
    def _back(redirect: str, query: dict[str, str], **answer: str) -> dict[str, str]:
        answer["state"] = query.get("state", "")
        joiner = "&" if "?" in redirect else "?"
        return {"location": f"{redirect}{joiner}{urlencode(answer)}"}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST /token: a code or a refresh token for new tokens."""
        grant_type = form.get("grant_type")
        if form.get("client_id") != CLIENT_ID:
            return 401, {"error": "invalid_client"}
        with self.lock:
            if grant_type == "authorization_code":
                return self._code(form)
            if grant_type == "refresh_token":
                return self._refresh(form)
        return 400, {"error": "unsupported_grant_type"}

    def _code(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = self.codes.pop(form.get("code", ""), None)  # single-use
        if grant is None or grant.expires < time.time():
            return 400, {"error": "invalid_grant", "error_description": "bad code"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect"}
        verifier = form.get("code_verifier", "").encode()
        digest = hashlib.sha256(verifier).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if not secrets.compare_digest(challenge, grant.challenge):
            return 400, {"error": "invalid_grant", "error_description": "PKCE failed"}
        self.log.append("token: code exchanged (PKCE verifier checked)")
        return 200, self._issue(grant.scope)

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        old = form.get("refresh_token", "")
        grant = self.refresh.pop(old, None)  # rotation: the old one dies now
        if grant is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown"}
        self._drop_access(old)
        self.log.append("token: refreshed (refresh token rotated)")
        return 200, self._issue(grant.scope)

    def _issue(self, scope: str) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.refresh[refresh] = Grant(CLIENT_ID, scope, time.time() + 86400)
        self.access[access] = Grant(
            CLIENT_ID, scope, time.time() + self.lifetime, refresh_token=refresh
        )
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "refresh_token": refresh,
            "scope": scope,
        }

    def revoke(self, form: dict[str, str]) -> None:
        """POST /revoke (RFC 7009): always 200, even for an unknown token."""
        token = form.get("token", "")
        with self.lock:
            if self.refresh.pop(token, None) is not None:
                self._drop_access(token)
                self.log.append("revoke: refresh token and its access tokens")
            elif self.access.pop(token, None) is not None:
                self.log.append("revoke: access token")

    def _drop_access(self, refresh_token: str) -> None:
        for key in [
            k for k, g in self.access.items() if g.refresh_token == refresh_token
        ]:
            del self.access[key]

    def live(self, access_token: str) -> bool:
        """Whether an access token may call the API."""
        with self.lock:
            grant = self.access.get(access_token)
            return grant is not None and grant.expires > time.time()


class DemoServer(ThreadingHTTPServer):
    """The demo authorization server and the provider, on one loopback port."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.authority = DemoAuthority()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/authorize":
            self._json(404, {"error": "not_found"})
            return
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        status, answer = self.server.authority.authorize(query)
        if status == 302:
            self.send_response(302)
            self.send_header("location", answer["location"])
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self._json(status, answer)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        authority = self.server.authority
        if self.path == "/v1/chat/completions":
            self._chat(json.loads(body))
            return
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if self.path == "/token":
            self._json(*authority.token(form))
        elif self.path == "/revoke":
            authority.revoke(form)
            self._json(200, {})
        else:
            self._json(404, {"error": "not_found"})

    def _chat(self, body: dict[str, Any]) -> None:
        token = self.headers.get("authorization", "").removeprefix("Bearer ")
        authority = self.server.authority
        if not authority.live(token):
            authority.log.append("chat: 401, the access token is not live")
            error = {"message": "invalid or expired token", "type": "invalid_token"}
            self._json(401, {"error": error})
            return
        authority.log.append("chat: served (a live access token)")
        text = body["messages"][-1]["content"]
        message = {"role": "assistant", "content": f"echo: {text}"}
        self._json(
            200,
            {
                "id": "chatcmpl-demo",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            },
        )

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("cache-control", "no-store")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return  # request lines carry codes: never printed


@contextmanager
def running() -> Iterator[DemoServer]:
    """The demo server, serving in a thread until the block ends."""
    server = DemoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ------------------------------------------------------------- the browser


class Browser:
    """Plays the user's browser: open the authorize URL, follow the redirect
    to palyra's listener, read the page it answers with."""

    def __init__(self) -> None:
        self.asked: dict[str, str] = {}  # the authorize URL's parameters
        self.redirected_to = ""
        self.page = ""
        self._thread: threading.Thread | None = None

    def open(self, url: str) -> None:
        """What ``open_browser`` is given: start browsing, return at once."""
        self.asked = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        self._thread = threading.Thread(target=self._browse, args=(url,))
        self._thread.start()

    def _browse(self, url: str) -> None:
        # A stand-in browser on loopback: no redirects followed, no proxies.
        with httpx.Client(follow_redirects=False, trust_env=False, timeout=30) as http:
            answer = http.get(url)  # the authorization server's redirect
            location = answer.headers["location"]
            self.redirected_to = urlsplit(location).path
            page = http.get(location)  # palyra's listener, once it has finished
            self.page = page.text

    def close(self) -> None:
        """Wait for the page to arrive."""
        if self._thread is not None:
            self._thread.join(timeout=30)


# ------------------------------------------------------------------ the tour


def choose_vault(argv: list[str]) -> palyra.SecretStore:
    """The OS keyring, unless ``--memory`` or ``PALYRA_EXAMPLE_MEMORY=1``."""
    if "--memory" in argv or os.environ.get("PALYRA_EXAMPLE_MEMORY") == "1":
        return palyra.MemorySecretStore()
    return palyra.KeyringSecretStore()


def say(text: str) -> None:
    """Print a long message wrapped, indented under the step."""
    print(textwrap.fill(text, 88, initial_indent="   ", subsequent_indent="     "))


def main(argv: list[str] | None = None) -> int:
    """Run the tour; 1 if the vault cannot be used."""
    vault = choose_vault(sys.argv[1:] if argv is None else argv)
    where = (
        "memory" if isinstance(vault, palyra.MemorySecretStore) else "the OS keyring"
    )
    with running() as server, tempfile.TemporaryDirectory() as home:
        config = {
            "providers": [
                {
                    "id": "demo",
                    "kind": "openai",
                    "base_url": f"{server.origin}/v1",
                    "oauth": {  # where the authorization server is
                        "client_id": CLIENT_ID,
                        "authorize_url": f"{server.origin}/authorize",
                        "token_url": f"{server.origin}/token",
                        "revocation_url": f"{server.origin}/revoke",
                        "scopes": ["chat", "offline_access"],
                    },
                }
            ],
            "models": [{"id": "demo-chat", "provider": "demo"}],
        }
        with palyra.Palyra(config, secrets=vault, home=home) as client:
            print(f"authorization server and provider: {server.origin}")
            print(f"tokens: in {where}")
            try:
                tour(client, server, vault)
            except palyra.VaultError as exc:
                print(f"\n{where[0].upper()}{where[1:]} cannot be used here:")
                say(str(exc))
                print("Run again with --memory to keep the tokens in memory.")
                return 1
            finally:
                clean_up(vault)
    return 0


def clean_up(vault: palyra.SecretStore) -> None:
    """Leave nothing behind in a real keyring, even after a failure mid-way."""
    with suppress(palyra.VaultError):
        for field_name in ("access_token", "refresh_token"):
            vault.delete(f"{PROFILE}:{field_name}")


def tour(client: palyra.Palyra, server: DemoServer, vault: palyra.SecretStore) -> None:
    """Sign in, chat, refresh (by hand, before a call, after a 401), revoke."""
    authority = server.authority
    news = Log(authority)

    def tokens() -> tuple[str, str]:
        access = vault.get(f"{PROFILE}:access_token") or ""
        return access, vault.get(f"{PROFILE}:refresh_token") or ""

    print("\n1. Sign in: client.auth.login_oauth, with a stand-in browser")
    browser = Browser()
    try:
        profile = client.auth.login_oauth(
            "demo", open_browser=browser.open, timeout=60, profile_id=PROFILE
        )
    finally:
        browser.close()
    asked = browser.asked
    say(f"the authorize URL carries: {', '.join(asked)}")
    redirect = urlsplit(asked["redirect_uri"])
    print(f"     code_challenge_method={asked['code_challenge_method']},", end=" ")
    print(f"redirect_uri=http://{redirect.hostname}:<a free port>{redirect.path}")
    print(f"   the browser was sent back to {browser.redirected_to} and shown:")
    print(f"     {page_text(browser.page)}")
    news.show()
    print(f"   profile: {profile.id}, kind={profile.kind}, health={profile.health},")
    print(f"     scopes={list(profile.scopes)}, client_id={profile.client_id},")
    print(f"     the access token expires in {minutes_left(profile)} minutes")
    access, refresh = tokens()
    print(
        f"   the vault holds an access and a refresh token: {bool(access and refresh)}"
    )

    print("\n2. A chat with the access token (Bearer)")
    print(f"   assistant: {client.chat(HELLO).choices[0].message.content}")
    news.show()

    print("\n3. Refresh now: client.auth.refresh (this token will live 2 minutes)")
    authority.lifetime = 120
    client.auth.refresh(PROFILE)
    news.show()
    new_access, new_refresh = tokens()
    print(f"   new access token: {new_access != access},", end=" ")
    print(f"new refresh token stored: {new_refresh != refresh}")
    print(f"   the old refresh token still works: {refresh in authority.refresh}")
    print(f"   the old access token still works: {authority.live(access)}")
    now = client.auth.get(PROFILE)
    print(f"   health: {now.health} ({minutes_left(now)} minutes left)")

    print("\n4. A chat with a token that expires within 5 minutes: refreshed first")
    authority.lifetime = 3600
    print(f"   assistant: {client.chat(HELLO).choices[0].message.content}")
    news.show()
    print(f"   health: {client.auth.get(PROFILE).health}")

    print(
        "\n5. A token the server stopped accepting: a 401, one refresh, the call again"
    )
    with authority.lock:
        authority.access.clear()  # as if the server had restarted
    print(f"   assistant: {client.chat(HELLO).choices[0].message.content}")
    news.show()

    print("\n6. Revoke: client.auth.revoke (RFC 7009), then the vault and the file")
    last_access, _ = tokens()
    client.auth.revoke(PROFILE)
    news.show()
    print(f"   the last access token still works: {authority.live(last_access)}")
    print(f"   profiles: {[p.id for p in client.auth.list()]}")
    print(f"   the vault holds a token: {any(tokens())}")
    try:
        client.chat(HELLO)
    except palyra.CredentialError as exc:
        say(f"a chat now: {type(exc).__name__}: {exc.message}")


class Log:
    """Prints what the authorization server did since it last printed."""

    def __init__(self, authority: DemoAuthority) -> None:
        self.authority = authority
        self.shown = 0

    def show(self) -> None:
        """Print the new lines of the server's log."""
        lines = self.authority.log[self.shown :]
        self.shown += len(lines)
        for line in lines:
            print(f"   server: {line}")


def minutes_left(profile: palyra.AuthProfile) -> int:
    """Whole minutes until the profile's access token expires."""
    assert profile.expires_at is not None
    return round((profile.expires_at.timestamp() - time.time()) / 60)


def page_text(page: str) -> str:
    """The words of palyra's small HTML page (it holds no token)."""
    title = page.split("<h1>", 1)[-1].split("</h1>", 1)[0]
    body = page.split("<p>", 1)[-1].split("</p>", 1)[0]
    return f"{title}: {body}"


if __name__ == "__main__":
    sys.exit(main())
