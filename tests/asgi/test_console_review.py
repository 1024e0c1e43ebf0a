"""The console's defects a review found (each test failed before its fix):
a refused key quoted back by its provider in forms redaction misses, deep
JSON at sign-in, bad counts, unknown profiles and budgets, the cookie's
Secure flag behind a proxy, the cookie sliding with its session, private
dataclass fields in answers, and a mount under a prefix."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import palyra
from palyra.asgi import create_app
from palyra.asgi._console_api import jsonable

pytestmark = pytest.mark.anyio


def made(tmp_path: Path, config: dict[str, Any] | None = None) -> tuple[Any, Any, str]:
    model = {"id": "bot", "provider": "local"}
    client = palyra.Palyra(
        config
        or {"models": [model], "providers": [{"id": "local", "kind": "deterministic"}]},
        home=tmp_path,
        secrets=palyra.MemorySecretStore(),
        ledger=palyra.MemoryLedger(),
    )
    _, admin = client.tokens.create("ops", scopes=["admin"])
    return client, create_app(client, console=True), admin


def http(app: Any, host: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://{host}"
    )


async def signed_in(h: httpx.AsyncClient, admin: str) -> dict[str, str]:
    r = await h.post("/console/login", json={"token": admin})
    return {"x-palyra-csrf": r.json()["csrf"]}


# 1 ------------------------------------------------------------------------
class _Echo(BaseHTTPRequestHandler):
    """A provider refusing a key and quoting it back, JSON-escaped ('/' as '\\/',
    as PHP's json_encode does) or cut short."""

    def log_message(self, *a: Any) -> None: ...

    def do_GET(self) -> None:
        key = self.headers["authorization"].removeprefix("Bearer ")
        if "/" in key:
            said = key.replace("/", "\\/")  # JSON-escaped
        elif len(key) >= 8:
            said = key[:-1]  # cut short by one character
        else:
            said = key  # verbatim (a short key is never redacted)
        data = ('{"error":{"message":"Invalid API key ' + said + '"}}').encode()
        self.send_response(401)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.mark.parametrize(
    "key", ["AKIAabc/def+ghi/jklmnopq", "zz-0123456789abcdefXYZ", "abc1234"]
)
async def test_a_refused_key_never_comes_back(tmp_path: Path, key: str) -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    config = {
        "providers": [
            {"id": "up", "kind": "openai", "base_url": base, "max_retries": 0}
        ],
        "models": [{"id": "m", "provider": "up"}],
    }
    client, app, admin = made(tmp_path, config)
    try:
        async with http(app) as h:
            csrf = await signed_in(h, admin)
            r = await h.post(
                "/console/v1/profiles",
                json={"provider": "up", "key": key},
                headers=csrf,
            )
        assert r.status_code == 400
        message = r.json()["error"]["message"]
        # the key, however it was escaped or cut, must not be readable
        shown = message.replace("\\/", "/")
        assert key[:-1] not in shown, message
    finally:
        srv.shutdown()
        srv.server_close()
        await client.aclose()


# 2 ------------------------------------------------------------------------
async def test_nested_json_at_login_is_a_400_not_a_500(tmp_path: Path) -> None:
    client, app, _ = made(tmp_path)
    async with http(app) as h:  # no token, no session: anyone
        r = await h.post(
            "/console/login",
            content=b"[" * 60_000,
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400, r.text
    await client.aclose()


# 3 ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query", ["limit=%C2%B2", "offset=%C2%B2", "limit=" + "1" * 5000]
)
async def test_a_bad_count_is_a_400_not_a_500(tmp_path: Path, query: str) -> None:
    client, app, admin = made(tmp_path)
    async with http(app) as h:
        await signed_in(h, admin)
        r = await h.get(f"/console/v1/records?{query}")
    assert r.status_code == 400, r.text
    await client.aclose()


# 4 ------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["refresh", "revoke"])
async def test_an_unknown_profile_is_a_404_without_the_servers_paths(
    tmp_path: Path, verb: str
) -> None:
    client, app, admin = made(tmp_path)
    async with http(app) as h:
        csrf = await signed_in(h, admin)
        r = await h.post(f"/console/v1/profiles/nope/{verb}", headers=csrf)
    assert str(tmp_path) not in r.text, r.text
    assert r.status_code == 404, r.text
    await client.aclose()


# 5 ------------------------------------------------------------------------
async def test_secure_is_not_decided_by_the_host_header(tmp_path: Path) -> None:
    """nginx's default `proxy_pass http://127.0.0.1:8000` sends `Host:
    127.0.0.1:8000` (and no X-Forwarded-Proto): users on https get a cookie
    without Secure. The server is not on loopback for them."""
    client, app, admin = made(tmp_path)
    sent: list[Any] = []
    body = json.dumps({"token": admin}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/console/login",
        "raw_path": b"/console/login",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("0.0.0.0", 8000),  # noqa: S104 - bound beyond loopback
    }
    msgs = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Any:
        return msgs.pop(0)

    async def send(m: Any) -> None:
        sent.append(m)

    await app(scope, receive, send)
    cookie = dict(sent[0]["headers"])[b"set-cookie"].decode()
    assert "Secure" in cookie, cookie
    await client.aclose()


# 6 ------------------------------------------------------------------------
async def test_the_cookie_slides_with_the_session(tmp_path: Path) -> None:
    client, app, admin = made(tmp_path)
    now = [1000.0]
    app.console._clock = lambda: now[0]
    async with http(app) as h:
        await signed_in(h, admin)  # Max-Age=1800
        now[0] += 20 * 60
        r = await h.get("/console/v1/session")
        assert r.json()["expires_in"] == 1800  # the server slid...
        assert (
            "set-cookie" in r.headers
        )  # ...the browser must be told, or drops it at 30 min
    await client.aclose()


# 7 ------------------------------------------------------------------------
async def test_jsonable_dumps_no_private_field(tmp_path: Path) -> None:
    client, app, admin = made(tmp_path)
    async with http(app) as h:
        r = await h.post(
            "/console/v1/budgets",
            json={"id": "a", "metric": "usd", "window": "day", "hard_limit": "1"},
            headers={"authorization": f"Bearer {admin}"},
        )
    assert not any(k.startswith("_") for k in r.json()), r.json()
    await client.aclose()


def test_jsonable_dumps_no_secret_field(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CS", "client-secret-value-123")
    client = palyra.Palyra(
        {
            "providers": [
                {
                    "id": "up",
                    "kind": "openai",
                    "oauth": {
                        "client_id": "cid",
                        "client_secret_env": "CS",
                        "authorize_url": "https://as.example/authorize",
                        "token_url": "https://as.example/token",
                    },
                }
            ],
            "models": [{"id": "m", "provider": "up"}],
        },
        home=tmp_path,
        ledger=False,
    )
    attempt = client.auth.start_oauth("up", redirect_uri="http://127.0.0.1/cb")
    text = json.dumps(jsonable(attempt))
    assert attempt.code_verifier not in text
    assert "client-secret-value-123" not in text
    client.close()


# 8 ------------------------------------------------------------------------
async def test_mounted_under_a_root_path_given_relative_paths(tmp_path: Path) -> None:
    """`_under_mount` accepts a path relative to root_path; the console's
    inner scope then gets root_path '/api/console' with path '/console/login'."""
    client, app, admin = made(tmp_path)
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as h:
        # httpx's ASGITransport gives path relative to root_path
        r = await h.post("/console/login", json={"token": admin})
    assert r.status_code == 200, r.text
    await client.aclose()
