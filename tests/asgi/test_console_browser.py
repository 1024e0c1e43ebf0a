"""The console in a real browser (issue 18): headless Chromium, driven by
selenium, against the console served by uvicorn on loopback, with the
loopback provider server checking keys and tokens and a real authorization
server for OAuth.

One flow, as an admin would go through it: sign in with an admin token;
connect an API key; see it listed as healthy; sign in with OAuth, the
browser following the authorization server's redirects and consenting on
its page; calls made, then the usage chart with a bar per day that has spend
and the figures of `client.usage.totals`; a budget added and its bar; the
key's profile revoked (the page asks first). Every page's screenshot is kept
under ``build/console-screenshots/`` and checked not blank. Then the key
typed into the form is searched for in every page's source, the cookies,
the browser's storage, the server's log and every file under the test's
directories (palyra's home, the browser's profile and home): nowhere.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import palyra
from palyra.asgi import create_app
from palyra.asgi._pages import usd
from tests.asgi.browser import (
    blank,
    blank_of,
    files_holding,
    screenshot,
    start_browser,
)
from tests.asgi.server import serving
from tests.auth.authserver import AuthServer
from tests.auth.test_oauth_client import oauth_config
from tests.upstream import Upstream

KEY = f"sk-e2e-{secrets.token_hex(16)}"  # unique: a hit anywhere is this key
HI = [{"role": "user", "content": "three words here"}]


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def server_log(tmp_path: Path) -> Iterator[Path]:
    """Everything logged while the test runs (palyra's and uvicorn's, access
    lines included), in a file."""
    path = tmp_path / "server.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # The test's own driver chatter (each page's source, at DEBUG) is not
    # the server's log.
    quiet = [logging.getLogger(n) for n in ("selenium", "urllib3")]
    for logger in quiet:
        logger.setLevel(logging.INFO)
    # uvicorn's own logging set-up (made by an earlier server in this
    # process) keeps its loggers from the root: they reach it while this runs.
    served = [
        logging.getLogger(n) for n in ("uvicorn", "uvicorn.access", "uvicorn.error")
    ]
    kept = [(logger.propagate, logger.disabled) for logger in served]
    for logger in served:
        logger.propagate, logger.disabled = True, False
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for logger in quiet:
            logger.setLevel(logging.NOTSET)
        for logger, (propagate, disabled) in zip(served, kept, strict=True):
            logger.propagate, logger.disabled = propagate, disabled
        handler.close()


def _config(auth: AuthServer, up: Upstream) -> dict[str, Any]:
    config = oauth_config(auth, up)  # provider "up", signed in to with OAuth
    config["providers"].append(
        {"id": "keyed", "kind": "openai", "base_url": up.base_url, "max_retries": 0}
    )
    config["models"] = [
        {"id": "m", "provider": "up", "pricing": {"input": 100, "output": 300}},
        {"id": "k", "provider": "keyed", "pricing": {"input": 200, "output": 600}},
    ]
    return config


class Flow:
    """The browser, the console's address, and every page source seen."""

    def __init__(self, browser: Any, base: str, tmp_path: Path) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser, self.base, self.by = browser, base, By
        self.wait = WebDriverWait(browser, 15)
        self.sources: list[str] = []
        self.tmp_path = tmp_path

    def open(self, path: str) -> None:
        self.browser.get(f"{self.base}/console{path}")
        self.seen()

    def seen(self) -> str:
        source: str = self.browser.page_source
        self.sources.append(source)
        return source

    def find(self, css: str) -> Any:
        return self.browser.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return list(self.browser.find_elements(self.by.CSS_SELECTOR, css))

    def button(self, label: str) -> Any:
        path = f"//button[normalize-space(.)={json.dumps(label)}]"
        return self.browser.find_element(self.by.XPATH, path)

    def until(self, check: Callable[[], Any], what: str) -> Any:
        return self.wait.until(lambda _: check(), message=what)

    def says(self, text: str) -> None:
        self.until(lambda: text in self.browser.page_source, f"the page to say {text}")
        self.seen()

    def row(self, first_cell: str) -> list[str]:
        for row in self.all("table tbody tr"):
            cells = [c.text for c in row.find_elements(self.by.TAG_NAME, "td")]
            if cells and cells[0] == first_cell:
                return cells
        raise AssertionError(f"no row {first_cell!r} in {self.browser.current_url}")

    def shot(self, name: str, *must: str) -> None:
        for css in must:  # the page's key elements, present and shown
            assert self.find(css).is_displayed(), f"{name}: {css} not shown"
        screenshot(self.browser, name)


def test_the_console_in_a_real_browser(
    auth: AuthServer, tmp_path: Path, server_log: Path
) -> None:
    profile_dir, browser_home = tmp_path / "chromium", tmp_path / "browser-home"
    browser_home.mkdir()
    with Upstream(api_key=lambda given: given == KEY or auth.valid(given)) as up:
        home = tmp_path / "palyra-home"
        ledger = palyra.SQLiteLedger(home / "usage.sqlite3")
        client = palyra.Palyra(
            _config(auth, up),
            secrets=palyra.MemorySecretStore(),
            home=home,
            ledger=ledger,
        )
        _, admin = client.tokens.create("ops", scopes=["admin"])
        app = create_app(client, console=True)
        with serving(app, log_config=None, log_level="debug") as v1:
            browser = start_browser(profile_dir, browser_home)
            try:
                flow = Flow(browser, v1.removesuffix("/v1"), tmp_path)
                _walk(flow, client, ledger, admin)
                cookies = browser.get_cookies()
                storage = browser.execute_script(
                    "return JSON.stringify([Object.entries(localStorage),"
                    " Object.entries(sessionStorage)])"
                )
            finally:
                browser.quit()  # its profile is written out before the search
        client.close()
    # The cookie: a session id only, as the issue fixes it.
    (session,) = [c for c in cookies if c["name"] == "palyra_console"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["secure"] is False  # http on loopback
    assert session["path"] == "/console"
    assert "expiry" in session  # not a session cookie: it expires
    # The key typed into the form is nowhere.
    for where, text in (
        ("a page's source", "\n".join(flow.sources)),
        ("the cookies", json.dumps(cookies)),
        ("the browser's storage", storage),
        ("the server's log", server_log.read_text(encoding="utf-8")),
    ):
        assert KEY not in text, f"the key is in {where}"
        assert admin not in text, f"the admin token is in {where}"
    assert "GET /console/providers" in server_log.read_text(encoding="utf-8")
    assert files_holding(KEY, tmp_path) == []


def _walk(
    flow: Flow, client: palyra.Palyra, ledger: palyra.SQLiteLedger, admin: str
) -> None:
    from selenium.webdriver.support.ui import Select

    # 1. Sign in with an admin token (signed out, the console sends there).
    flow.open("/")
    assert flow.browser.current_url.endswith("/console/login")
    flow.shot("login", "form.login", "#token")
    flow.find("#token").send_keys(admin)
    flow.button("Sign in").click()
    flow.says("<h1>Overview</h1>")
    # 2. Connect an API key.
    flow.open("/providers")
    Select(flow.find("#p-provider")).select_by_value("keyed")
    flow.find("#p-key").send_keys(KEY)
    flow.find("#p-name").clear()
    flow.find("#p-name").send_keys("work")
    flow.button("Check and connect").click()
    flow.says("Connected keyed-work.")
    # 3. Listed, healthy (an API key present in the vault), its tail masked.
    cells = flow.row("keyed-work")
    assert cells[1:5] == ["keyed", "api_key", "global", "static"]
    assert cells[6] == f"sk-…{KEY[-4:]}"
    # 4. OAuth: the browser goes to the authorization server, consents on
    # its page, and is sent back through the console's callback.
    flow.button("Sign in with up").click()
    flow.until(lambda: "Allow palyra?" in flow.browser.page_source, "consent page")
    flow.shot("oauth-consent", "form")
    flow.button("Allow").click()
    flow.until(lambda: "connected=up-default" in flow.browser.current_url, "back")
    flow.seen()
    flow.open("/providers")
    assert flow.row("up-default")[1:5] == ["up", "oauth", "global", "ok"]
    flow.shot("providers", "#p-key", "table tbody tr")
    # 5. Calls through both profiles, and one day of spend before today.
    for model in ("k", "k", "m"):
        client.chat(HI, model=model)
    ledger.record(_past_record(datetime.now(UTC) - timedelta(days=3)))
    usage = client.usage
    flow.open("/usage?days=7")
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since -= timedelta(days=6)
    by_day = usage.totals("day", since)
    spent_days = [t for t in by_day if (t.cost_total or 0) > 0]
    bars = flow.all("svg.chart rect.bar")
    assert len(bars) == len(spent_days) == 2
    titles = [b.find_element(flow.by.TAG_NAME, "title") for b in bars]
    assert [t.get_attribute("textContent") for t in titles] == [
        f"{t.key[0]}: ${t.cost_total:.6f}" for t in spent_days
    ]
    heights = [float(b.get_attribute("height")) for b in bars]
    costs = [float(t.cost_total or 0) for t in spent_days]
    assert heights.index(max(heights)) == costs.index(max(costs))
    for totals in usage.totals("model", since):
        cells = flow.row(totals.key[0])
        assert cells[1] == f"{totals.calls:,}"
        assert cells[4] == usd(totals.cost_total)  # the page's own rounding
    flow.shot("usage", "svg.chart", "svg.chart rect.bar", "table caption a")
    # 6. A budget, then its bar.
    flow.open("/budgets")
    flow.find("#f-id").send_keys("daily")
    flow.find("#f-hard_limit").send_keys("5")
    flow.button("Add").click()
    flow.says('<h2 id="b-0">daily')
    meter = flow.find("section.budget meter")
    assert meter.get_attribute("max") == "5"
    (status,) = client.budgets.status()
    assert float(meter.get_attribute("value")) == float(status.spent + status.reserved)
    flow.shot("budgets", "section.budget meter", "form.budget-form")
    # The other pages: each drawn, each screenshot kept.
    flow.open("/")
    assert flow.find("main h1").text == "Overview"
    flow.shot("overview", ".cards .card")
    flow.open("/health")
    flow.shot("health", "main table")
    flow.open("/jobs")
    flow.shot("jobs", "main table")
    flow.open("/tokens")
    flow.shot("tokens", "main table")
    # 7. Revoke the key's profile: the page asks first; no means no.
    flow.open("/providers")
    flow.button("Revoke keyed-work").click()
    flow.browser.switch_to.alert.dismiss()
    assert "keyed-work" in [p.id for p in client.auth.list()]
    flow.button("Revoke keyed-work").click()
    flow.browser.switch_to.alert.accept()
    flow.says("Revoked keyed-work.")
    assert [p.id for p in client.auth.list()] == ["up-default"]


def _past_record(when: datetime) -> palyra.UsageRecord:
    """A call of three days ago, as the ledger keeps any."""
    return palyra.UsageRecord(
        started_at=when,
        finished_at=when + timedelta(seconds=1),
        provider="keyed",
        model="k",
        input_uncached=1000,
        output=500,
        cost_total=Decimal("0.5"),
    )


def test_the_blank_check_tells_a_blank_page_from_a_drawn_one(tmp_path: Path) -> None:
    """The screenshots' check can fail: a blank page is blank."""
    browser = start_browser(tmp_path / "profile", tmp_path)
    try:
        browser.get("data:text/html,<title>nothing</title>")
        assert blank(browser.get_screenshot_as_png(), blank_of(browser))
        browser.get("data:text/html,<p>Allow palyra?</p>")  # a few words do count
        assert not blank(browser.get_screenshot_as_png(), blank_of(browser))
    finally:
        browser.quit()
