"""The console's admin API through ``httpx.ASGITransport`` (issue 18, first
part): nothing without an admin, sign-in with an admin-scoped token, the
session's cookie (its attributes, a random id, never the token), CSRF on
every state change, bearer tokens for scripts, the security headers on
every answer, sessions ending with their token, and no secret in any
answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import palyra
from palyra.asgi import create_app, create_console
from palyra.asgi._sessions import SessionStore, on_loopback
from tests.conftest import FAKE_KEY

pytestmark = pytest.mark.anyio
HI = [{"role": "user", "content": "hello"}]
BUDGET = {"id": "daily", "metric": "usd", "window": "day", "hard_limit": "5"}


def made(tmp_path: Path, **kw: Any) -> tuple[palyra.Palyra, Any, str, str]:
    model = {"id": "bot", "provider": "local", "pricing": {"input": 1, "output": 2}}
    client = palyra.Palyra(
        {"models": [model], "providers": [{"id": "local", "kind": "deterministic"}]},
        home=tmp_path,
        ledger=palyra.MemoryLedger(),
    )
    _, admin = client.tokens.create("ops", scopes=["admin"])
    _, plain = client.tokens.create("app")
    return client, create_app(client, console=True, **kw), admin, plain


def http(app: Any, host: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://{host}"
    )


async def login(h: httpx.AsyncClient, token: str) -> str:
    r = await h.post("/console/login", json={"token": token})
    assert r.status_code == 200, r.text
    csrf: str = r.json()["csrf"]
    return csrf


async def test_nothing_without_an_admin(tmp_path: Path) -> None:
    client, app, _, plain = made(tmp_path)
    async with http(app) as h:
        asked = [
            ("GET", "/console/v1/health"),
            ("GET", "/console/v1/tokens"),
            ("POST", "/console/v1/budgets"),
        ]
        for method, path in asked:
            r = await h.request(method, path)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "signed_out"
        r = await h.post("/console/login", json={"token": plain})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "missing_scope")
        r = await h.post("/console/login", json={"token": "pk-palyra-nope"})
        assert r.status_code == 401
        r = await h.post("/console/login", json={})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "no_token")
        r = await h.get(
            "/console/v1/health", headers={"authorization": f"Bearer {plain}"}
        )
        assert r.status_code == 403  # a token without the admin scope
    await client.aclose()


async def test_a_session_is_a_random_cookie_with_strict_attributes(
    tmp_path: Path,
) -> None:
    client, app, admin, _ = made(tmp_path)
    async with http(app) as h:
        r = await h.post("/console/login", json={"token": admin})
        cookie = r.headers["set-cookie"]
        name, _, rest = cookie.partition("=")
        value = rest.split(";", 1)[0]
        assert name == "palyra_console"
        assert len(value) >= 40
        assert admin not in cookie
        assert admin not in r.text
        attrs = {a.strip().split("=")[0] for a in cookie.split(";")[1:]}
        assert {"Path", "Max-Age", "HttpOnly", "SameSite"} <= attrs
        assert "SameSite=Strict" in cookie
        assert "Path=/console" in cookie
        assert "Max-Age=1800" in cookie
        assert "Secure" not in attrs  # on loopback
        assert (await h.get("/console/v1/session")).json()["csrf"] == r.json()["csrf"]
    async with http(app, host="console.example.com") as h:
        r = await h.post("/console/login", json={"token": admin})
        assert "Secure" in r.headers["set-cookie"]  # beyond loopback
    await client.aclose()


async def test_reads_and_writes_with_a_session(tmp_path: Path) -> None:
    client, app, admin, _ = made(tmp_path)
    await client.achat(HI, model="bot", agent="docs")
    async with http(app) as h:
        csrf = await login(h, admin)
        health = (await h.get("/console/v1/health")).json()
        assert [m["model"] for m in health] == ["bot"]
        totals = (await h.get("/console/v1/usage/totals?by=agent")).json()
        assert [(t["key"], t["calls"]) for t in totals] == [(["docs"], 1)]
        assert isinstance(totals[0]["cost_total"], str)  # exact, as a string
        # A change without its CSRF token is refused, and changes nothing.
        r = await h.post("/console/v1/budgets", json=BUDGET)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "csrf_failed")
        r = await h.post(
            "/console/v1/budgets", json=BUDGET, headers={"x-palyra-csrf": "x"}
        )
        assert r.status_code == 403
        assert (await h.get("/console/v1/budgets")).json() == []
        r = await h.post("/console/v1/budgets", json={**BUDGET, "csrf": csrf})
        assert r.status_code == 200, r.text
        assert [b["policy"] for b in (await h.get("/console/v1/budgets")).json()] == [
            "daily"
        ]
        r = await h.delete("/console/v1/budgets/daily", headers={"x-palyra-csrf": csrf})
        assert r.json() == {"removed": "daily"}
        assert (await h.get("/console/v1/budgets")).json() == []
        r = await h.post("/console/v1/budgets", json={"id": "x", "metric": "lots"},
                         headers={"x-palyra-csrf": csrf})  # fmt: skip
        assert r.status_code == 400
        assert "metric" in r.json()["error"]["message"]
        assert (await h.get("/console/v1/profiles")).json() == []
        r = await h.get("/console/v1/nothing")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    await client.aclose()


async def test_tokens_made_in_the_console_show_their_secret_once(
    tmp_path: Path,
) -> None:
    client, app, admin, _ = made(tmp_path)
    async with http(app) as h:
        csrf = await login(h, admin)
        r = await h.post(
            "/console/v1/tokens",
            json={"name": "ci", "scopes": ["chat"]},
            headers={"x-palyra-csrf": csrf},
        )
        secret = r.json()["secret"]
        assert secret.startswith("pk-palyra-")
        client.tokens.verify(secret, "chat")
        listed = await h.get("/console/v1/tokens")
        assert secret not in listed.text
        assert admin not in listed.text
        assert [t["name"] for t in listed.json()] == ["ops", "app", "ci"]
        r = await h.post(
            "/console/v1/tokens", json={"name": "x", "root": True},
            headers={"x-palyra-csrf": csrf},
        )  # fmt: skip
        assert r.status_code == 400
    await client.aclose()


async def test_a_revoked_token_ends_its_sessions(tmp_path: Path) -> None:
    client, app, admin, _ = made(tmp_path)
    _, second = client.tokens.create("ops2", scopes=["admin"])
    async with http(app) as h, http(app) as other:
        await login(h, admin)
        await login(other, second)
        tok = next(t for t in client.tokens.list() if t.name == "ops")
        # Revoked elsewhere (the CLI, another process): the next request ends it.
        client.tokens.revoke(tok.id)
        r = await h.get("/console/v1/health")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "signed_out")
        assert (await other.get("/console/v1/health")).status_code == 200
        # Revoked from the console: its sessions end at once.
        second_id = next(t.id for t in client.tokens.list() if t.name == "ops2")
        other_csrf = (await other.get("/console/v1/session")).json()["csrf"]
        r = await other.post(
            f"/console/v1/tokens/{second_id}/revoke",
            headers={"x-palyra-csrf": other_csrf},
        )
        assert r.json()["revoked_at"] is not None
        assert (await other.get("/console/v1/health")).status_code == 401
    await client.aclose()


async def test_a_bearer_needs_no_session_nor_csrf(tmp_path: Path) -> None:
    client, app, admin, _ = made(tmp_path)
    async with http(app) as h:
        auth = {"authorization": f"Bearer {admin}"}
        r = await h.post("/console/v1/budgets", json=BUDGET, headers=auth)
        assert r.status_code == 200
        r = await h.get("/console/v1/session", headers=auth)
        assert r.json()["csrf"] is None
    await client.aclose()


async def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    client, app, admin, _ = made(tmp_path)
    async with http(app) as h:
        answers = [
            await h.get("/console/v1/health"),
            await h.post("/console/login", json={"token": admin}),
            await h.get("/console/v1/health"),
            await h.post(
                "/console/login",
                content=b"{nope",
                headers={"content-type": "application/json"},
            ),
        ]
        for r in answers:
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp
            assert "frame-ancestors 'none'" in csp
            assert "form-action 'self';" in csp  # no OAuth provider: only itself
            assert "unsafe-inline" not in csp
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["x-content-type-options"] == "nosniff"
        assert answers[3].status_code == 400  # bad JSON: 400, never 500
    await client.aclose()


async def test_a_form_signs_in_and_out(tmp_path: Path) -> None:
    client, app, admin, _ = made(tmp_path)
    async with http(app) as h:
        r = await h.post("/console/login", data={"token": admin})
        assert r.status_code == 303
        assert r.headers["location"] == "/console/"
        csrf = (await h.get("/console/v1/session")).json()["csrf"]
        assert (await h.post("/console/logout")).status_code == 403  # no CSRF
        r = await h.post("/console/logout", data={"csrf": csrf})
        assert r.status_code == 204
        assert "Max-Age=0" in r.headers["set-cookie"]
        h.cookies.clear()
        assert (await h.get("/console/v1/health")).status_code == 401
    await client.aclose()


async def test_without_admin_tokens_a_session_is_still_needed(tmp_path: Path) -> None:
    client = palyra.Palyra(home=tmp_path, ledger=False)
    console = create_console(client, admin_token_required=False)
    async with http(console) as h:
        assert (await h.get("/v1/health")).status_code == 401  # served at its root
        r = await h.post("/login", json={})
        csrf = r.json()["csrf"]
        assert (await h.get("/v1/health")).status_code == 200
        r = await h.post("/v1/budgets", json=BUDGET)
        assert r.status_code == 403  # CSRF all the same
        r = await h.post("/v1/budgets", json=BUDGET, headers={"x-palyra-csrf": csrf})
        assert r.status_code == 200
    await client.aclose()


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("localhost", True),
        ("[::1]:8000", True),
        ("console.example.com", True),  # its public_url
        ("evil.example", False),  # a name pointed at 127.0.0.1 (DNS rebinding)
        ("127.0.0.1.evil.example", False),
        ("[::1", False),
        ("", False),
    ],
)
async def test_without_admin_tokens_only_its_own_names_are_answered(
    tmp_path: Path, host: str, allowed: bool
) -> None:
    client = palyra.Palyra(home=tmp_path, ledger=False)
    console = create_console(
        client,
        admin_token_required=False,
        public_url="https://console.example.com/console",
    )
    async with http(console) as h:
        r = await h.post("/login", json={}, headers={"host": host})
        assert r.status_code == (200 if allowed else 403), r.text
        if not allowed:
            assert r.json()["error"]["code"] == "host_not_allowed"
            assert "set-cookie" not in r.headers
    # with tokens, the Host is not what protects it: the token is
    _, admin = client.tokens.create("ops", scopes=["admin"])
    async with http(create_console(client)) as h:
        r = await h.post("/login", json={"token": admin}, headers={"host": host or "x"})
        assert r.status_code == 200
    await client.aclose()


async def test_no_secret_in_any_answer(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client, app, admin, plain = made(tmp_path)
    bodies = []
    async with http(app) as h:
        csrf = await login(h, admin)
        for path in (
            "session",
            "health",
            "budgets",
            "usage/totals",
            "tokens",
            "profiles",
        ):
            r = await h.get(f"/console/v1/{path}")
            bodies.append(r.text + str(r.headers))
        r = await h.post("/console/v1/budgets", json={"csrf": csrf, "id": FAKE_KEY})
        bodies.append(r.text)
    text = " ".join(bodies)
    assert admin not in text
    assert plain not in text
    assert FAKE_KEY not in text
    await client.aclose()


def test_sessions_slide_end_and_are_kept_by_digest() -> None:
    store = SessionStore(idle=10, absolute=25, most=3)
    cookie, session = store.create("tok_1", now=0)
    assert store.get(cookie, now=9) is session
    assert store.get(cookie, now=18) is session  # moved on by the last use
    assert store.get(cookie, now=24.9) is session  # still within 25 s of login
    assert store.get(cookie, now=25) is None  # the absolute limit
    assert store.get("made-up", now=0) is None
    kept = [store.create("tok_2", now=0)[0] for _ in range(4)]
    assert store.get(kept[0], now=1) is None  # the oldest went past 3
    assert all(store.get(c, now=1) for c in kept[1:])
    assert not any(c in repr(store.__dict__) for c in kept)  # digests only
    assert store.end_token("tok_2") == 3


def test_loopback_hosts() -> None:
    assert on_loopback("127.0.0.1:8000")
    assert on_loopback("localhost")
    assert on_loopback("[::1]:8000")
    assert not on_loopback("console.example.com")
    assert not on_loopback("10.0.0.5:80")
    assert not on_loopback(None)


async def test_behind_a_proxy_the_cookie_and_the_callback_are_as_told(
    tmp_path: Path,
) -> None:
    client = palyra.Palyra(home=tmp_path, ledger=False)
    _, admin = client.tokens.create("ops", scopes=["admin"])
    console = create_console(
        client, secure_cookies=True, public_url="https://console.example.com/console/"
    )
    async with http(console) as h:
        r = await h.post("/login", json={"token": f" {admin} "})  # pasted with spaces
        assert r.status_code == 200
        assert "Secure" in r.headers["set-cookie"]  # on loopback, as told
    from palyra.asgi._console_api import callback_url

    assert (
        callback_url(None, console.public_url)  # type: ignore[arg-type]
        == "https://console.example.com/console/oauth/callback"
    )
    await client.aclose()


async def test_token_fields_are_checked(tmp_path: Path) -> None:
    client, app, admin, _ = made(tmp_path)
    async with http(app) as h:
        csrf = {"x-palyra-csrf": await login(h, admin)}
        bad = [
            {"name": "x", "scopes": {"chat": 1}},
            {"name": "x", "days": 0},
            {"name": "x", "days": "7"},
            {"name": "x", "rate_limit": "lots"},
        ]
        for body in bad:
            r = await h.post("/console/v1/tokens", json=body, headers=csrf)
            assert r.status_code == 400, body
        r = await h.post(
            "/console/v1/tokens", json={"name": "week", "days": 7}, headers=csrf
        )
        assert r.json()["token"]["expires_at"] is not None
    await client.aclose()
