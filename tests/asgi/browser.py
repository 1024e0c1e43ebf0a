"""Headless Chromium for the console's end-to-end tests, driven by selenium.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
`start_browser` skips the test, saying why, only where the browser cannot
start. The browser is kept to loopback: every host but 127.0.0.1 resolves
to nothing, and the background services that would call home are off. Its
profile and its home are directories of the test's, searched afterwards.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "console-screenshots"  # kept as CI artefacts
# Where the docs' pictures go too, when asked (read at import: the tests'
# environment is cleaned of PALYRA_ variables before each test).
DOCS_SHOTS = os.environ.get("PALYRA_DOCS_SCREENSHOTS")
_CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
_DRIVER = ("/usr/bin/chromedriver",)
_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1280,1000",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-features=PasswordManagerOnboarding,AutofillServerCommunication",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def _found(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), shutil.which(name))


def start_browser(profile: Path, home: Path) -> Any:
    """A headless Chromium with its profile in ``profile`` and ``HOME`` at
    ``home``; skips (with the reason) where none can start."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # the dev extra has it
        pytest.skip(f"selenium is not installed: {exc}")
    chromium = _found(_CHROMIUM, "chromium")
    driver = _found(_DRIVER, "chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "headless Chromium cannot start: no chromium or chromedriver"
            " (Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    env = {**os.environ, "HOME": str(home), "SE_AVOID_STATS": "true"}
    service = Service(executable_path=driver, env=env)
    try:
        browser = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        pytest.skip(f"headless Chromium cannot start here: {exc.msg or exc}")
    browser.set_page_load_timeout(20)
    browser.implicitly_wait(0)
    return browser


def screenshot(browser: Any, name: str) -> Path:
    """The page's screenshot, kept under ``build/``; checked not blank
    (against a blank page's, taken by the same browser at the same size)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = browser.get_screenshot_as_png()
    assert not blank(png, blank_of(browser)), f"the screenshot of {name} is blank"
    path = SHOTS / f"{name}.png"
    path.write_bytes(png)
    if DOCS_SHOTS:  # the docs' pictures, taken by this very test
        Path(DOCS_SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(DOCS_SHOTS) / f"console-{name}.png").write_bytes(png)
    return path


_BLANKS: dict[str, bytes] = {}


def blank_of(browser: Any) -> bytes:
    """A screenshot of an empty page in ``browser`` (taken once, in a tab
    of its own so that the page under test stays as it is)."""
    key = str(browser.session_id)
    if key not in _BLANKS:
        here = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get("about:blank")
        _BLANKS[key] = browser.get_screenshot_as_png()
        browser.close()
        browser.switch_to.window(here)
    return _BLANKS[key]


def pixels(png: bytes) -> bytes:
    """A PNG's image data as PNG keeps it (filtered rows, decompressed)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def blank(png: bytes, empty: bytes) -> bool:
    """Whether ``png`` shows next to nothing beyond the empty page ``empty``
    (the same size: fewer than 64 of their image data's bytes differ; a
    word of text changes thousands)."""
    mine, theirs = pixels(png), pixels(empty)
    if len(mine) != len(theirs):
        return False  # another size: not the empty page
    return sum(1 for a, b in zip(mine, theirs, strict=True) if a != b) < 64


def files_holding(secret: str, *roots: Path) -> list[Path]:
    """Every file under ``roots`` whose bytes hold ``secret`` (as UTF-8 or
    UTF-16, as a browser's stores may keep text)."""
    needles = [secret.encode(), secret.encode("utf-16-le")]
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    found.append(path)
    return found
