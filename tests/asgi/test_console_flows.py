"""The console's admin API for providers, on real loopback servers (issue 18,
first part): an API key connected (validated by the provider), refused
without being kept, revoked; an OAuth sign-in through a real authorization
server, its callback completing the attempt and sending the browser back;
jobs, records and routing savings. The key typed in never comes back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import palyra
from palyra.asgi import create_app
from tests.auth.authserver import AuthServer
from tests.auth.test_oauth_client import oauth_config
from tests.conftest import FAKE_KEY
from tests.upstream import Upstream

pytestmark = pytest.mark.anyio


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def up() -> Iterator[Upstream]:
    with Upstream(api_key=FAKE_KEY) as server:
        yield server


def console(config: dict[str, Any], tmp_path: Path) -> tuple[palyra.Palyra, Any, str]:
    client = palyra.Palyra(
        config,
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        ledger=palyra.MemoryLedger(),
    )
    _, admin = client.tokens.create("ops", scopes=["admin"])
    return client, create_app(client, console=True), admin


async def signed_in(app: Any, admin: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
    h = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    )
    r = await h.post("/console/login", json={"token": admin})
    return h, {"x-palyra-csrf": r.json()["csrf"]}


async def test_an_api_key_is_checked_kept_and_revoked(
    up: Upstream, tmp_path: Path
) -> None:
    config = {
        "providers": [
            {"id": "up", "kind": "openai", "base_url": up.base_url, "max_retries": 0}
        ],
        "models": [{"id": "m", "provider": "up"}],
    }
    client, app, admin = console(config, tmp_path)
    h, csrf = await signed_in(app, admin)
    texts = []
    async with aclosing(h):
        wrong = "sk-wrong-0123456789abcdefghij"
        r = await h.post(
            "/console/v1/profiles", json={"provider": "up", "key": wrong}, headers=csrf
        )
        assert r.status_code == 400  # the provider said no: nothing kept
        assert r.json()["error"]["code"] == "invalid_api_key"
        texts.append(r.text)
        assert (await h.get("/console/v1/profiles")).json() == []
        r = await h.post(
            "/console/v1/profiles",
            json={"provider": "up", "key": FAKE_KEY, "name": "work"},
            headers=csrf,
        )
        assert r.status_code == 200, r.text
        profile = r.json()
        assert (profile["id"], profile["kind"]) == ("up-work", "api_key")
        assert profile["key_hint"] == f"sk-…{FAKE_KEY[-4:]}"  # a masked tail only
        texts.append(r.text)
        listed = await h.get("/console/v1/profiles")
        assert [p["id"] for p in listed.json()] == ["up-work"]
        texts.append(listed.text)
        assert up.requests[-1].path.endswith("/models")  # validated first
        r = await h.post("/console/v1/profiles", json={"provider": "up"}, headers=csrf)
        assert r.status_code == 400
        # the default profile of its provider: set, seen, cleared
        assert not profile["default"]
        r = await h.post("/console/v1/profiles/up-work/default", headers=csrf)
        assert r.status_code == 200, r.text
        assert r.json()["default"]
        assert client.auth.get("up-work").default
        r = await h.post("/console/v1/profiles/up-work/default")  # no CSRF
        assert r.status_code == 403
        r = await h.delete("/console/v1/profiles/up-work/default", headers=csrf)
        assert r.status_code == 200
        assert not r.json()["default"]
        r = await h.post("/console/v1/profiles/nobody/default", headers=csrf)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "profile_not_found"
        r = await h.delete("/console/v1/profiles/up-work/revoke", headers=csrf)
        assert r.status_code == 404  # only the default is deleted so
        r = await h.post("/console/v1/profiles/up-work/revoke", headers=csrf)
        assert r.json() == {"revoked": "up-work"}
        assert (await h.get("/console/v1/profiles")).json() == []
    text = " ".join(texts)
    assert FAKE_KEY not in text
    assert wrong not in text
    await client.aclose()


async def test_an_oauth_sign_in_comes_back_to_the_console(
    auth: AuthServer, up: Upstream, tmp_path: Path
) -> None:
    up.api_key = auth.valid  # the provider takes the server's access tokens
    client, app, admin = console(oauth_config(auth, up), tmp_path)
    h, csrf = await signed_in(app, admin)
    async with aclosing(h):
        r = await h.post(
            "/console/v1/oauth", json={"provider": "up", "name": "me"}, headers=csrf
        )
        assert r.status_code == 200, r.text
        started = r.json()
        assert started["redirect_uri"] == "http://127.0.0.1/console/oauth/callback"
        assert "code_verifier" not in r.text
        location = auth.approve(started["authorize_url"])  # the browser consents
        back = urlsplit(location)
        assert back.path == "/console/oauth/callback"
        # The authorization server's redirect: no session cookie comes along.
        fresh = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        )
        async with fresh:
            r = await fresh.get(f"{back.path}?{back.query}")
            assert r.status_code == 303
            assert r.headers["location"] == "/console/?connected=up-me"
            again = await fresh.get(f"{back.path}?{back.query}")  # single use
            assert again.headers["location"] == "/console/?oauth_failed=OAuthError"
        profiles = (await h.get("/console/v1/profiles")).json()
        assert [(p["id"], p["kind"]) for p in profiles] == [("up-me", "oauth")]
        r = await h.post("/console/v1/profiles/up-me/refresh", headers=csrf)
        assert r.status_code == 200
        assert r.json()["id"] == "up-me"
        r = await h.post("/console/v1/profiles/up-me/revoke", headers=csrf)
        assert r.status_code == 200
        # Refused at the server: the browser is told, nothing is kept.
        r = await h.post("/console/v1/oauth", json={"provider": "up"}, headers=csrf)
        denied = urlsplit(auth.approve(r.json()["authorize_url"], deny=True))
        r = await h.get(f"{denied.path}?{denied.query}")
        assert r.headers["location"] == "/console/?oauth_failed=OAuthError"
        assert (await h.get("/console/v1/profiles")).json() == []
    await client.aclose()


async def test_jobs_records_and_savings(tmp_path: Path) -> None:
    config = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {"id": "bot", "provider": "local", "pricing": {"input": 1, "output": 2}}
        ],
        "jobs": [{"kind": "health_probe", "every": 120}],
    }
    client, app, admin = console(config, tmp_path)
    for _ in range(3):
        await client.achat([{"role": "user", "content": "hi"}], agent="docs")
    h, _ = await signed_in(app, admin)
    async with aclosing(h):
        jobs = (await h.get("/console/v1/jobs")).json()
        assert [j["job"]["id"] for j in jobs] == ["health_probe"]
        page = (await h.get("/console/v1/records?limit=2")).json()
        assert (page["next_offset"], len(page["records"])) == (2, 2)
        newest = client.usage.records()[::-1]
        assert [x["id"] for x in page["records"]] == [x.id for x in newest[:2]]
        rest = (await h.get("/console/v1/records?limit=2&offset=2")).json()
        assert len(rest["records"]) == 1
        assert rest["next_offset"] is None
        r = await h.get("/console/v1/records?limit=0&offset=1")
        assert r.status_code == 400  # a page of none would point at itself
        assert (await h.get("/console/v1/records?limit=x")).status_code == 400
        savings = await h.get("/console/v1/savings")
        assert savings.status_code == 200
        assert (
            await h.get("/console/v1/usage/totals?since=yesterday")
        ).status_code == 400
    await client.aclose()


async def test_the_providers_page_connects_signs_in_and_revokes(
    auth: AuthServer, up: Upstream, tmp_path: Path
) -> None:
    """The page's forms: a key checked and connected (its masked tail shown,
    the key never), a refused one named without its text, "Sign in with"
    through the real authorization server and back, refresh and revoke."""
    import re

    config = oauth_config(auth, up)
    config["providers"].append(
        {"id": "keyed", "kind": "openai", "base_url": up.base_url, "max_retries": 0}
    )
    up.api_key = lambda given: given == FAKE_KEY or auth.valid(given)
    client, app, admin = console(config, tmp_path)
    h, csrf = await signed_in(app, admin)
    token = csrf["x-palyra-csrf"]
    pages = []
    async with aclosing(h):
        page = (await h.get("/console/providers")).text
        assert "No profiles yet" in page
        assert 'type="password"' in page
        assert "Sign in with up</button>" in page
        assert "Sign in with keyed" not in page  # no OAuth settings
        form = {"csrf": token, "provider": "keyed", "key": "sk-wrong-0123456789abcdef"}
        r = await h.post("/console/providers/key", data=form)
        assert r.status_code == 400
        assert "refused the key" in r.text
        pages.append(r.text)
        r = await h.post("/console/providers/key", data={**form, "key": FAKE_KEY})
        assert r.status_code == 200
        assert "Connected keyed-default." in r.text
        assert f"<td>sk-…{FAKE_KEY[-4:]}</td>" in r.text
        pages.append(r.text)
        r = await h.post(
            "/console/providers/oauth", data={"csrf": token, "provider": "up"}
        )
        assert r.status_code == 303
        # A browser follows a form's redirect only to where form-action allows
        # (found by the browser test): the authorization server's origin.
        origin = auth.authorize_url.removesuffix("/authorize")
        assert f"form-action 'self' {origin};" in r.headers["content-security-policy"]
        back = urlsplit(auth.approve(r.headers["location"]))
        r = await h.get(f"{back.path}?{back.query}")
        assert r.headers["location"] == "/console/?connected=up-default"
        page = (await h.get("/console/providers")).text
        assert "<td>up-default</td>" in page
        assert "Refresh up-default</button>" in page
        r = await h.post(
            "/console/providers/refresh", data={"csrf": token, "id": "up-default"}
        )
        assert "Refreshed up-default." in r.text
        r = await h.post(
            "/console/providers/default", data={"csrf": token, "id": "up-default"}
        )
        assert "up-default is now the default." in r.text
        assert "<td>default</td>" in r.text
        assert "Not default up-default" in r.text
        assert client.auth.get("up-default").default
        r = await h.post(
            "/console/providers/undefault", data={"csrf": token, "id": "up-default"}
        )
        assert "up-default is no longer the default." in r.text
        assert not client.auth.get("up-default").default
        for pid in ("up-default", "keyed-default"):
            r = await h.post(
                "/console/providers/revoke", data={"csrf": token, "id": pid}
            )
            assert f"Revoked {pid}." in r.text
        assert "No profiles yet" in (await h.get("/console/providers")).text
        r = await h.post("/console/providers/revoke", data={"id": "x"})
        assert r.status_code == 403  # no CSRF token
        pages.append((await h.get("/console/providers")).text)
    for page in pages:
        assert FAKE_KEY not in page
        assert "sk-wrong-0123456789abcdef" not in page
        assert (
            re.search(r"<script(?! src=\"/console/static/console\.js\")|style=", page)
            is None
        )
    await client.aclose()
