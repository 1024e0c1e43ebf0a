"""What the network layer does for the send in progress: the attempt's time
bounds a response head trickled byte by byte, and httpx's and httpcore's logs
never carry the call's key."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import palyra
from palyra._core.sending import HTTP_LOGGERS, SecretScrubber, enter, leave, time_left
from tests.helpers import DRIVERS, chat, completion_json, drain, start_stream
from tests.upstream import Reply, Upstream

USER = [{"role": "user", "content": "hi"}]
# No "sk-" prefix: only the scrub of the call's own key can catch it.
KEY = "palyraLOGkey0123456789abcdefXYZ"


class Trickler:
    """A loopback server that answers every request with a valid response
    head sent one byte every ``pace`` seconds (then a body)."""

    def __init__(self, pace: float = 0.1) -> None:
        self.pace = pace
        self._server = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/v1"

    def _serve(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        body = json.dumps(completion_json("slow")).encode()
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            f"x-padding: {'p' * 200}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        with conn:
            try:
                _read_request(conn)
                for byte in head:
                    if self._stop.wait(self.pace):
                        return
                    conn.sendall(bytes([byte]))
                conn.sendall(body)
            except OSError:
                return  # the client gave up: what this test wants

    def close(self) -> None:
        self._stop.set()
        self._server.close()


def _read_request(conn: socket.socket) -> None:
    """Read one whole request: closing on unread bytes would reset the
    connection before the client reads the answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _received(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += _received(conn)


def _received(conn: socket.socket) -> bytes:
    data = conn.recv(65536)
    if not data:
        raise OSError("the client went away")
    return data


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    yield server
    server.close()


def _config(base_url: str, **provider: Any) -> dict[str, Any]:
    entry = {
        "id": "up",
        "kind": "openai",
        "base_url": base_url,
        "api_key_env": "UP_KEY",
        "max_retries": 0,
        **provider,
    }
    return {
        "providers": [entry],
        "models": [{"id": "gpt-4o-mini", "provider": "up"}],
    }


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("op", ["chat", "stream"])
async def test_a_trickled_head_ends_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, trickler: Trickler, driver: str, op: str
) -> None:
    """The head is ~250 bytes at 0.1 s each (25 s); every read gets a byte
    well within httpx's read timeout, so only the deadline can end the wait."""
    monkeypatch.setenv("UP_KEY", KEY)
    started = time.perf_counter()
    client = palyra.Palyra(_config(trickler.base_url))
    try:
        with pytest.raises(palyra.APITimeoutError, match="deadline"):
            await _call(client, driver, op, deadline=0.8)
    finally:
        await _close(client, driver)
    assert time.perf_counter() - started < 2.0


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("op", ["chat", "stream"])
async def test_the_reported_case_a_timeout_under_the_deadline(
    monkeypatch: pytest.MonkeyPatch, trickler: Trickler, driver: str, op: str
) -> None:
    """As reported (``timeout=1, deadline=2`` took 30 s), halved: the call's
    ``timeout`` bounds the attempt, head included (max_retries=0)."""
    monkeypatch.setenv("UP_KEY", KEY)
    started = time.perf_counter()
    client = palyra.Palyra(_config(trickler.base_url))
    limits = {"timeout": 0.5, "deadline": 1}
    try:
        with pytest.raises(palyra.APITimeoutError, match=r"not complete after 0\.5s"):
            await _call(client, driver, op, **limits)
    finally:
        await _close(client, driver)
    assert time.perf_counter() - started < 2.0


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_the_attempt_budget_bounds_the_head_without_a_deadline(
    monkeypatch: pytest.MonkeyPatch, trickler: Trickler, driver: str
) -> None:
    """With no deadline, the provider's ``timeout`` bounds each attempt's whole
    head (as it bounds a whole body), and the error says so."""
    monkeypatch.setenv("UP_KEY", KEY)
    client = palyra.Palyra(_config(trickler.base_url, timeout=0.4))
    started = time.perf_counter()
    try:
        with pytest.raises(palyra.APITimeoutError, match=r"not complete after 0\.4s"):
            await chat(client, driver, USER, deadline=None)
    finally:
        await _close(client, driver)
    assert time.perf_counter() - started < 3.0


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_slow_but_whole_head_within_the_budget_is_served(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    """The bound is the attempt's time, not a tighter one: a head trickled in
    ~0.5 s is served under a 5 s deadline."""
    monkeypatch.setenv("UP_KEY", KEY)
    server = Trickler(pace=0.002)
    client = palyra.Palyra(_config(server.base_url))
    try:
        reply = await chat(client, driver, USER, timeout=1, deadline=5)
        assert reply.choices[0].message.content == "slow"
    finally:
        await _close(client, driver)
        server.close()


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_proxy_trickling_the_head_ends_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, trickler: Trickler, driver: str
) -> None:
    """Through a proxy from ``HTTP_PROXY`` (here the trickler itself answers as
    the proxy), the deadline bounds the head all the same."""
    monkeypatch.setenv("UP_KEY", KEY)
    monkeypatch.setenv("HTTP_PROXY", trickler.base_url.removesuffix("/v1"))
    client = palyra.Palyra(_config("http://localhost:9/v1"))
    started = time.perf_counter()
    try:
        with pytest.raises(palyra.APITimeoutError, match="deadline"):
            await chat(client, driver, USER, deadline=0.8)
    finally:
        await _close(client, driver)
    assert trickler.accepted == 1  # the request went to the proxy
    assert time.perf_counter() - started < 2.0


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_slow_lookup_ends_with_the_attempts_time(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    """The provider's ``timeout`` (0.5 s) is the attempt's whole time: a lookup
    hanging for 3 s must not get the longer ``connect_timeout`` (5 s)."""
    monkeypatch.setenv("UP_KEY", KEY)

    def slow(host: str, port: int) -> list[str]:
        time.sleep(3)
        return ["127.0.0.1"]

    config = _config("https://slow.example.com/v1", timeout=0.5, connect_timeout=5)
    client = palyra.Palyra(config, resolver=slow)
    started = time.perf_counter()
    try:
        with pytest.raises(palyra.APITimeoutError):
            await chat(client, driver, USER, deadline=None)
    finally:
        await _close(client, driver)
    assert time.perf_counter() - started < 2.0


def test_the_scope_is_per_context_and_reset() -> None:
    assert time_left() is None
    token = enter(5.0, (KEY,))
    left = time_left()
    assert left is not None
    assert 4.0 < left <= 5.0
    seen: list[float | None] = []
    thread = threading.Thread(target=lambda: seen.append(time_left()))
    thread.start()
    thread.join()
    assert seen == [None]  # another thread's sends are its own
    leave(token)
    assert time_left() is None


@pytest.fixture
def http_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in HTTP_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_httpcore_debug_logs_never_carry_the_key(
    monkeypatch: pytest.MonkeyPatch, http_debug: pytest.LogCaptureFixture, driver: str
) -> None:
    """An upstream that echoes the key in ``x-request-id``: httpcore logs the
    response headers at DEBUG, and the key is gone from every record."""
    monkeypatch.setenv("UP_KEY", KEY)
    with Upstream(api_key=KEY) as upstream:
        headers = {"x-request-id": f"req_{KEY}", "x-echo": KEY}
        upstream.enqueue(Reply(json=completion_json("ok"), headers=headers))
        upstream.enqueue(Reply(json=completion_json("ok"), headers=headers))
        client = palyra.Palyra(_config(upstream.base_url))
        try:
            await chat(client, driver, USER)
            await drain(await start_stream(client, driver, USER))
        finally:
            await _close(client, driver)
    text = "\n".join(record.getMessage() for record in http_debug.records)
    assert "receive_response_headers.complete" in text  # httpcore did log them
    assert "req_<redacted>" in text
    assert KEY not in text


def test_records_outside_a_palyra_send_are_untouched() -> None:
    record = logging.LogRecord("httpcore.http11", logging.DEBUG, "", 0, KEY, None, None)
    assert SecretScrubber().filter(record)
    assert record.getMessage() == KEY
    token = enter(None, (KEY,))
    try:
        record = logging.LogRecord("x", logging.DEBUG, "", 0, "got %s", (KEY,), None)
        assert SecretScrubber().filter(record)
        assert record.getMessage() == "got <redacted>"
    finally:
        leave(token)


async def _call(client: palyra.Palyra, driver: str, op: str, **limits: Any) -> None:
    if op == "chat":
        await chat(client, driver, USER, **limits)
    else:
        await drain(await start_stream(client, driver, USER, **limits))


async def _close(client: palyra.Palyra, driver: str) -> None:
    if driver == "async":
        await client.aclose()
    else:
        client.close()
