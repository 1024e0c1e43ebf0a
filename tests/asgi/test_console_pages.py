"""The console's first pages (issue 18): the sign-in form and the overview,
server-rendered, readable without JavaScript, with no inline script or
style (the CSP forbids both), every value escaped; the overview's figures
are the ledger's."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

import palyra
from palyra.asgi import create_app
from palyra.asgi._pages import esc, overview_page

pytestmark = pytest.mark.anyio
HI = [{"role": "user", "content": "hello"}]


def made(tmp_path: Path) -> tuple[palyra.Palyra, httpx.AsyncClient, str]:
    model = {"id": "bot", "provider": "local", "pricing": {"input": 1, "output": 2}}
    client = palyra.Palyra(
        {"models": [model], "providers": [{"id": "local", "kind": "deterministic"}]},
        home=tmp_path,
        ledger=palyra.MemoryLedger(),
    )
    _, admin = client.tokens.create("ops", scopes=["admin"])
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(client, console=True)),
        base_url="http://127.0.0.1",
    )
    return client, http, admin


def no_inline(page: str) -> None:
    # one script, the package's own, and nothing inline
    assert re.findall(r"<script[^>]*>", page) == [
        '<script src="/console/static/console.js" defer>'
    ]
    assert "<script" not in page.replace(
        '<script src="/console/static/console.js" defer></script>', ""
    )
    assert "style=" not in page
    assert "<style" not in page
    assert re.search(r"\son[a-z]+=", page) is None  # no inline handlers


async def test_signed_out_a_browser_is_sent_to_the_sign_in_form(tmp_path: Path) -> None:
    client, http, _ = made(tmp_path)
    async with http:
        r = await http.get("/console/")
        assert (r.status_code, r.headers["location"]) == (303, "/console/login")
        form = await http.get("/console/login")
        assert form.status_code == 200
        assert form.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in form.headers["content-security-policy"]
        page = form.text
        no_inline(page)
        assert '<label for="token">' in page
        assert 'type="password"' in page
        assert 'action="/console/login"' in page
        assert 'href="/console/static/console.css"' in page
        script = await http.get("/console/static/console.js")  # signed out too
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "script-src 'self'" in script.headers["content-security-policy"]
        for never in ("localStorage", "sessionStorage", "document.cookie", "fetch("):
            assert never not in script.text  # it keeps and sends nothing
        css = await http.get("/console/static/console.css")
        assert css.headers["content-type"].startswith("text/css")
        assert "outline" in css.text  # keyboard focus is visible
    await client.aclose()


async def test_a_refused_token_shows_the_form_again_without_it(tmp_path: Path) -> None:
    client, http, _ = made(tmp_path)
    _, plain = client.tokens.create("app")
    async with http:
        for typed, said in (
            ("pk-palyra-nope<b>", "not accepted"),
            (plain, "no admin scope"),
        ):
            r = await http.post("/console/login", data={"token": typed})
            assert r.status_code == 401
            assert said in r.text
            assert typed not in r.text
            assert "palyra_console" not in r.headers.get("set-cookie", "")
            no_inline(r.text)
    await client.aclose()


async def test_the_overview_shows_the_ledgers_figures(tmp_path: Path) -> None:
    client, http, admin = made(tmp_path)
    for agent in ("a", "b", "c"):
        await client.achat(HI, agent=agent)
    async with http:
        r = await http.post("/console/login", data={"token": admin})
        assert r.status_code == 303
        page = (await http.get("/console/")).text
        no_inline(page)
        (row,) = client.usage.totals("model")
        assert f"{row.calls:,}" in page
        assert "Calls this month" in page
        assert ">bot<" in page  # the top model
        assert "0.0%" in page  # the error rate
        assert admin not in page
    await client.aclose()


def test_every_value_is_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    assert "<" not in esc(evil)
    assert '"' not in esc(evil)
    row = SimpleNamespace(key=(evil,), calls=3, cost_total=Decimal("1.5"))
    page = overview_page(
        "/console", today=Decimal(0), month=Decimal("1.5"), calls=3, errors=1, top=[row]
    ).decode()
    assert evil not in page
    assert "&lt;img" in page
    assert "33.3%" in page


async def test_the_usage_page_has_a_bar_per_day_with_spend(tmp_path: Path) -> None:
    """Spend on three of the last ten days (two calls on one): three bars,
    labelled, with a legend; the tables and their CSV are the ledger's."""
    import dataclasses
    from datetime import UTC, datetime, timedelta

    from palyra._governance import new_record_id

    client, http, admin = made(tmp_path)
    await client.achat(HI, agent="a")
    (first,) = client.usage.records()
    ledger = client._ledger.get()
    now = datetime.now(UTC)
    for back, agent in ((0, "b"), (3, "a"), (7, "c")):
        when = now - timedelta(days=back, minutes=5)
        ledger.record(
            dataclasses.replace(
                first,
                id=new_record_id(),
                started_at=when,
                finished_at=when,
                agent=agent,
            )
        )
    async with http:
        assert (await http.get("/console/usage")).status_code == 303  # signed out
        await http.post("/console/login", data={"token": admin})
        r = await http.get("/console/usage?days=30")
        page = r.text
        no_inline(page)
        days = client.usage.totals("day", now - timedelta(days=30))
        with_spend = [t for t in days if (t.cost_total or 0) > 0]
        assert len(with_spend) == 3
        assert page.count('<rect class="bar"') == 3
        for t in with_spend:
            assert f"{t.key[0]}: ${t.cost_total:.6f}" in page  # each bar's title
            assert f">{t.key[0][5:]}<" in page  # its axis label
        assert "Spend per day (USD)" in page  # the legend
        assert page.count('class="y-label"') == 3
        by_agent = client.usage.totals("agent", now - timedelta(days=30))
        csv = await http.get("/console/usage.csv?by=agent&days=30")
        assert csv.headers["content-type"].startswith("text/csv")
        assert "attachment" in csv.headers["content-disposition"]
        lines = csv.text.strip().splitlines()
        assert lines[0] == "agent,calls,input_tokens,output_tokens,cost_usd"
        assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(
            t.key[0] for t in by_agent
        )
        for bad in ("days=0", "days=x", "days=99999"):
            assert (await http.get(f"/console/usage?{bad}")).status_code == 400
        assert (await http.get("/console/usage.csv?by=secret")).status_code == 400
    await client.aclose()


def test_csv_cells_that_look_like_formulas_are_defused() -> None:
    from palyra.asgi._usage_page import totals_csv

    row = SimpleNamespace(
        key=("=HYPERLINK(1)",), calls=1, input_uncached=1, cache_read=0,
        cache_write=0, output=1, cost_total=None,
    )  # fmt: skip
    assert "'=HYPERLINK(1)" in totals_csv([row], "agent").decode()


async def test_budgets_are_added_shown_as_bars_and_removed(tmp_path: Path) -> None:
    client, http, admin = made(tmp_path)
    async with http:
        await http.post("/console/login", data={"token": admin})
        csrf = (await http.get("/console/v1/session")).json()["csrf"]
        page = (await http.get("/console/budgets")).text
        no_inline(page)
        assert "No budgets." in page
        assert f'name="csrf" value="{csrf}"' in page
        assert '<label for="f-hard_limit">' in page
        form = {"id": "daily", "metric": "usd", "window": "day", "hard_limit": "5",
                "scope": "global", "value": ""}  # fmt: skip
        r = await http.post("/console/budgets", data=form)
        assert r.status_code == 403  # no CSRF token: refused, nothing added
        assert client.budgets.status() == []
        r = await http.post("/console/budgets", data={**form, "csrf": csrf})
        assert (r.status_code, r.headers["location"]) == (303, "/console/budgets")
        await client.achat(HI)
        (status,) = client.budgets.status()
        page = (await http.get("/console/budgets")).text
        no_inline(page)
        assert '<meter min="0" max="5"' in page
        assert (
            f"spent ${status.spent:.6f}" in page
            or f"spent ${status.spent:,.2f}" in page
        )
        assert "of $5.00" in page
        bad = {**form, "id": "tokens", "hard_limit": "lots", "csrf": csrf}
        r = await http.post("/console/budgets", data=bad)
        assert r.status_code == 400
        assert "hard_limit" in r.text
        assert 'role="alert"' in r.text
        r = await http.post(
            "/console/budgets/remove", data={"id": "daily", "csrf": csrf}
        )
        assert r.status_code == 303
        assert "No budgets." in (await http.get("/console/budgets")).text
        r = await http.post(
            "/console/budgets/remove", data={"id": "nope", "csrf": csrf}
        )
        assert r.status_code == 400
    await client.aclose()


async def test_the_alerts_fired_are_listed_on_the_page_and_by_the_api(
    tmp_path: Path,
) -> None:
    client, http, admin = made(tmp_path)
    client.budgets.add(id="watch", scope="agent", hard_limit="1", alert_at=["1e-9"])
    async with http:
        await http.post("/console/login", data={"token": admin})
        assert "No alerts yet." in (await http.get("/console/budgets")).text
        await client.achat(HI, agent="bot")
        page = (await http.get("/console/budgets")).text
        no_inline(page)
        (alert,) = client.budgets.alerts()
        assert "Alerts fired" in page
        assert "<td>agent bot</td>" in page
        await client.achat(HI, agent="other")  # a second bar of the same budget
        page = (await http.get("/console/budgets")).text
        ids = re.findall(r'id="([^"]+)"', page)
        assert len(ids) == len(set(ids))  # each heading its own id
        assert "<td>0.0000001%</td>" in page
        assert f"<td>{alert.at.isoformat(timespec='seconds')}</td>" in page
        r = await http.get("/console/v1/budgets/alerts?limit=5")
        assert r.status_code == 200
        *_, listed = r.json()  # the oldest: the first agent's
        assert listed["policy"] == "watch"
        assert listed["threshold"] == "1E-9"
        assert listed["spent"] == str(alert.spent)
        r = await http.get("/console/v1/budgets/alerts?limit=x")
        assert r.status_code == 400
        assert (await http.get("/console/v1/budgets/other")).status_code == 404
    await client.aclose()


async def test_health_and_jobs_pages(tmp_path: Path) -> None:
    model = {"id": "bot", "provider": "local"}
    client = palyra.Palyra(
        {"models": [model], "providers": [{"id": "local", "kind": "deterministic"}],
         "jobs": [{"kind": "health_probe", "every": 120}]},
        home=tmp_path, ledger=palyra.MemoryLedger(),
    )  # fmt: skip
    _, admin = client.tokens.create("ops", scopes=["admin"])
    await client.achat(HI)
    client.scheduler.run_pending()
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(client, console=True)),
        base_url="http://127.0.0.1",
    )
    async with http:
        assert (await http.get("/console/health")).status_code == 303  # signed out
        await http.post("/console/login", data={"token": admin})
        health = (await http.get("/console/health")).text
        no_inline(health)
        assert "<td>local/bot</td>" in health
        assert "<td>closed</td>" in health
        assert "<td>100%</td>" in health
        jobs = (await http.get("/console/jobs")).text
        no_inline(jobs)
        assert "<td>health_probe</td>" in jobs
        assert "<td>every 0:02:00</td>" in jobs  # its schedule, as the library says it
    await client.aclose()


async def test_tokens_are_made_with_their_secret_shown_once_and_revoked(
    tmp_path: Path,
) -> None:
    client, http, admin = made(tmp_path)
    async with http:
        await http.post("/console/login", data={"token": admin})
        csrf = (await http.get("/console/v1/session")).json()["csrf"]
        page = (await http.get("/console/tokens")).text
        no_inline(page)
        assert "<td>ops</td>" in page
        assert admin not in page
        assert 'name="scope_admin" value="1">' in page  # admin: never ticked for you
        form = {"csrf": csrf, "name": "ci", "scope_chat": "1", "days": "30"}
        r = await http.post("/console/tokens", data=form)
        assert r.status_code == 200
        secret = re.search(r'<code class="secret">([^<]+)</code>', r.text)
        assert secret is not None
        info = client.tokens.verify(secret.group(1), "chat")
        assert info.scopes == ("chat",)
        assert info.expires_at is not None
        again = (await http.get("/console/tokens")).text
        assert secret.group(1) not in again  # shown that once
        assert "<td>ci</td>" in again
        bad = await http.post("/console/tokens", data={"csrf": csrf, "name": ""})
        assert bad.status_code == 400
        assert 'role="alert"' in bad.text
        r = await http.post(
            "/console/tokens/revoke", data={"csrf": csrf, "id": info.id}
        )
        assert r.status_code == 303
        assert "revoked" in (await http.get("/console/tokens")).text
        r = await http.post("/console/tokens", data={**form, "csrf": "wrong"})
        assert r.status_code == 403
    await client.aclose()
