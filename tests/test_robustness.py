"""Deadlines, caps and misuse: nothing hangs, nothing leaks, mistakes are named."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    chat,
    chunk_json,
    completion_json,
    drain,
    start_stream,
)
from tests.upstream import Reply, Upstream

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]
TRICKLE = Reply(sse_raw=b": keep-alive\n\n" * 40, chunk_delay=0.05)


def _config(base_url: str, **provider: Any) -> dict[str, Any]:
    entry = {"id": "up", "kind": "openai", "base_url": base_url, "max_retries": 0}
    return {
        "providers": [{**entry, "api_key_env": "UP_KEY", **provider}],
        "models": [{"id": "gpt-4o-mini", "provider": "up"}],
    }


@pytest.fixture(name="driven")
async def driven_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> AsyncIterator[palyra.Palyra]:
    """A client of the loopback upstream, closed by the test's driver."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client = palyra.Palyra(_config(upstream.base_url))
    yield client
    if driver == "async":
        await client.aclose()
    else:
        client.close()


@pytest.fixture(name="client")
def client_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> Iterator[palyra.Palyra]:
    """A client of the loopback upstream."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    with palyra.Palyra(_config(upstream.base_url)) as client:
        yield client


def test_trickling_body_hits_the_attempt_deadline(
    upstream: Upstream, client: palyra.Palyra
) -> None:
    """Bytes arriving slowly cannot stretch a call past its timeout."""
    upstream.enqueue(TRICKLE)
    started = time.perf_counter()
    with pytest.raises(palyra.APITimeoutError, match=r"not complete after 0\.4s"):
        client.chat(USER, timeout=0.4)
    assert time.perf_counter() - started < 1.5


def test_stream_of_keepalives_hits_the_deadline(
    upstream: Upstream, client: palyra.Palyra
) -> None:
    """A stream that only sends keep-alives times out before its first chunk,
    so the error raises from ``client.stream`` (where a retry could still
    help)."""
    upstream.enqueue(TRICKLE)
    started = time.perf_counter()
    with pytest.raises(palyra.APITimeoutError, match=r"no chunk for 0\.4s"):
        client.stream(USER, timeout=0.4)
    assert time.perf_counter() - started < 1.5


SILENT = Reply(sse_raw=b": open\n\n: never sent\n\n", chunk_delay=30)
KEEPALIVES = Reply(sse_raw=b": keep-alive\n\n" * 100, chunk_delay=0.05)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        pytest.param(SILENT, "no first chunk arrived", id="silent"),
        pytest.param(
            KEEPALIVES, "no first chunk arrived; only keep-alives", id="keepalives"
        ),
    ],
)
async def test_stream_deadline_is_a_timeout_sync_and_async(
    upstream: Upstream, driven: palyra.Palyra, driver: str, reply: Reply, detail: str
) -> None:
    """Headers, then nothing (or keep-alives only): the call's deadline passes
    before the first chunk, and both drivers say so with APITimeoutError."""
    upstream.enqueue(reply)
    started = time.perf_counter()
    with pytest.raises(palyra.APITimeoutError) as info:
        await start_stream(driven, driver, USER, deadline=0.6)
    assert time.perf_counter() - started < 1.5
    assert info.value.message.startswith("call deadline of 0.6s passed after 1 attempt")
    assert detail in info.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_silence_before_the_first_chunk_is_named(
    upstream: Upstream, driven: palyra.Palyra, driver: str
) -> None:
    """A read timeout before any chunk says "before the first chunk", not
    "mid-stream"; after a chunk it says "mid-stream"."""
    upstream.enqueue(SILENT)
    with pytest.raises(palyra.APITimeoutError) as info:
        await start_stream(driven, driver, USER, timeout=0.3)
    assert "upstream went silent before the first chunk" in info.value.message
    first = chunk_json(content="a")
    upstream.enqueue(Reply(sse=[first, first], chunk_delay=30))
    stream = await start_stream(driven, driver, USER, timeout=0.3)
    with pytest.raises(palyra.APITimeoutError, match="went silent mid-stream"):
        await drain(stream)


@pytest.mark.anyio
async def test_async_trickle_hits_the_deadline(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The async driver keeps the same deadline."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    upstream.enqueue(TRICKLE)
    async with palyra.Palyra(_config(upstream.base_url)) as client:
        with pytest.raises(palyra.APITimeoutError):
            await client.achat(USER, timeout=0.4)


def test_huge_error_body_is_capped(upstream: Upstream, client: palyra.Palyra) -> None:
    """A multi-megabyte HTML error page is cut, quickly, to a bounded excerpt."""
    page = b"<html><body>" + b"<p>bad gateway</p>" * 400_000 + b"</body></html>"
    upstream.enqueue(Reply(status=502, body=page, content_type="text/html"))
    started = time.perf_counter()
    with pytest.raises(palyra.InternalServerError, match="text/html") as info:
        client.chat(USER)
    assert time.perf_counter() - started < 2
    assert len(str(info.value)) < 1000


def test_redirect_is_an_error_naming_the_location(
    upstream: Upstream, client: palyra.Palyra
) -> None:
    """A 3xx means a wrong base_url, not a broken body."""
    upstream.enqueue(Reply(status=307, headers={"location": "https://elsewhere/v1"}))
    with pytest.raises(palyra.APIStatusError, match="redirect to https://elsewhere"):
        client.chat(USER)


def test_done_only_stream_is_not_a_clean_answer(
    upstream: Upstream, client: palyra.Palyra
) -> None:
    """[DONE] with no chunk before it is an error, not an empty success."""
    upstream.enqueue(Reply(sse=["[DONE]"]))
    with pytest.raises(palyra.APIResponseValidationError, match="no chunk"):
        client.stream(USER)


def test_headers_are_never_sent_twice(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Config headers replace palyra's, and caller headers the config's, case
    insensitively; a credential in the caller's headers is refused."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    config = _config(upstream.base_url, headers={"User-Agent": "my-app", "X-Team": "a"})
    with palyra.Palyra(config) as client:
        client.chat(USER, extra_headers={"x-team": "b"})
        with pytest.raises(palyra.InvalidRequestError, match="carries credentials"):
            client.chat(USER, extra_headers={"Authorization": f"Bearer {FAKE_KEY}"})
    request = upstream.requests[-1]
    assert request.headers["user-agent"] == "my-app"
    assert request.headers["x-team"] == "b"
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert len(upstream.requests) == 1


# The first loop's connection cannot be closed once its loop has ended: it is
# dropped, and its socket reports as unclosed when collected.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_client_used_from_two_event_loops(
    upstream: Upstream, client: palyra.Palyra
) -> None:
    """A second asyncio.run gets fresh connections instead of a dead loop's."""

    async def call(close: bool = False) -> str | None:
        content = (await client.achat(USER)).choices[0].message.content
        if close:
            await client.aclose()
        return content

    assert asyncio.run(call()) == "hi"
    assert asyncio.run(call(close=True)) == "hi"
    gc.collect()  # report the dropped socket here, under this test's filters


def test_closed_client_refuses_calls(upstream: Upstream, client: palyra.Palyra) -> None:
    """After close() a call says so instead of reopening connections."""
    client.chat(USER)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.chat(USER)


@pytest.mark.anyio
async def test_sync_transport_serves_async_calls_when_it_can() -> None:
    """transport= alone (a MockTransport) also serves achat: never the network."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200,
            json={
                "id": "x",
                "model": "m",
                "choices": [{"message": {"content": "mock"}, "finish_reason": "stop"}],
            },
        )

    config = _config("https://api.example.com/v1", api_key_env=None, auth_header="none")
    async with palyra.Palyra(config, transport=httpx.MockTransport(handler)) as client:
        reply = await client.achat(USER)
    assert reply.choices[0].message.content == "mock"
    assert seen == ["https://api.example.com/v1/chat/completions"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"max_tokens": "lots"}, "max_tokens: must be a positive", id="str"
        ),
        pytest.param({"max_tokens": -5}, "max_tokens: must be a positive", id="neg"),
        pytest.param({"n": True}, "n: must be a positive", id="bool"),
        pytest.param({"extra_body": {"stream": False}}, "extra_body: stream", id="rsv"),
        pytest.param({"timeout": 0}, "timeout: must be a positive", id="timeout"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    """Option values are checked before any call."""
    with (
        palyra.Palyra() as client,
        pytest.raises(palyra.InvalidRequestError, match=message),
    ):
        client.chat(USER, **options)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        pytest.param("https://169.254.169.254/v1", False, id="metadata"),
        pytest.param("https://10.1.2.3/v1", False, id="private"),
        pytest.param("https://[::ffff:192.168.0.1]/v1", False, id="mapped"),
        pytest.param("https://0.0.0.0/v1", False, id="unspecified"),
        pytest.param("https://[fec0::1]/v1", False, id="site-local"),
        pytest.param("https://100.100.100.200/v1", False, id="alibaba-metadata"),
        pytest.param("https://[2002:a9fe:a9fe::1]/v1", False, id="6to4-metadata"),
        pytest.param("https://[2002:808:808::1]/v1", True, id="6to4-public"),
        pytest.param("https://8.8.8.8/v1", True, id="public"),
        pytest.param("http://127.0.0.1:9/v1", True, id="loopback"),
    ],
)
def test_private_addresses_need_an_opt_in(url: str, allowed: bool) -> None:
    """Special-purpose literal IPs (private, link-local, reserved, and IPv6
    forms embedding one) are refused unless opted in."""
    config = _config(url)
    if allowed:
        palyra.PalyraConfig.from_dict(config)
    else:
        with pytest.raises(palyra.ConfigError, match="allow_private_base_url"):
            palyra.PalyraConfig.from_dict(config)
    config["providers"][0]["allow_private_base_url"] = True
    palyra.PalyraConfig.from_dict(config)


def test_invalid_port_and_blank_alias() -> None:
    """Ports out of range and blank or repeated aliases are config errors."""
    with pytest.raises(palyra.ConfigError, match=r"base_url: has an invalid port"):
        palyra.PalyraConfig.from_dict(_config("https://x.example:99999"))
    for aliases, message in (([" "], "non-blank"), (["a", "a"], "must not repeat")):
        config = _config("https://x.example")
        config["models"][0]["aliases"] = aliases
        with pytest.raises(palyra.ConfigError, match=message):
            palyra.PalyraConfig.from_dict(config)


@pytest.mark.parametrize(
    "provider",
    [
        pytest.param({"api_key_env": FAKE_KEY}, id="key-as-env-name"),
        pytest.param({"api_key": [FAKE_KEY]}, id="key-wrong-type"),
        pytest.param({"api_key": FAKE_KEY, "bogus": 1}, id="unknown-beside-key"),
    ],
)
def test_config_error_chain_holds_no_key(provider: dict[str, Any]) -> None:
    """pydantic's error quotes inputs; it must not ride along on ConfigError."""
    config = _config("https://api.example.com/v1", **{"api_key_env": None, **provider})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", palyra.InsecureConfigWarning)
        with pytest.raises(palyra.ConfigError) as info:
            palyra.PalyraConfig.from_dict(config)
    seen: BaseException | None = info.value
    while seen is not None:
        assert FAKE_KEY not in str(seen)
        assert FAKE_KEY not in repr(seen)
        seen = seen.__cause__ or seen.__context__


def test_interrupted_stream_chain_holds_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's error (which holds the request headers) is not chained."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    chunk = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,'
        b'"delta":{"content":"par"}}]}\n\n'
    )

    class Breaking(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield chunk
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=Breaking())

    config = _config("https://api.example.com/v1")
    with (
        palyra.Palyra(config, transport=httpx.MockTransport(handler)) as client,
        client.stream(USER) as stream,
        pytest.raises(palyra.StreamInterruptedError) as info,
    ):
        list(stream)
    seen: BaseException | None = info.value
    while seen is not None:
        for attr in ("request", "response"):
            assert not hasattr(seen, attr) or isinstance(seen, palyra.PalyraError)
        assert FAKE_KEY not in str(seen)
        seen = seen.__cause__ or seen.__context__


def test_scripted_replies_are_checked() -> None:
    """Bad scripts fail at enqueue; OpenAI-shaped tool calls are accepted."""
    with palyra.Palyra() as client:
        backend = client.deterministic()
        with pytest.raises(ValueError, match="status must be"):
            backend.enqueue(status=302)
        with pytest.raises(ValueError, match="non-200 status"):
            backend.enqueue(error="oops")
        with pytest.raises(ValueError, match="needs a 'name'"):
            backend.enqueue(tool_calls=[{"arguments": {}}])
        backend.enqueue(
            tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f"}}]
        )
        [call] = client.chat(USER).choices[0].message.tool_calls or []
    assert (call.id, call.function.name) == ("c1", "f")


def test_lazy_exports_are_listed_by_dir() -> None:
    """dir(palyra) shows lazily imported names too."""
    assert {"DeterministicBackend", "ScriptedReply"} <= set(dir(palyra))


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "limit",
    [
        pytest.param({"timeout": 0.01}, id="timeout"),
        pytest.param({"deadline": 0.01}, id="deadline"),
    ],
)
async def test_callers_own_short_limits_never_open_the_breaker(
    upstream: Upstream,
    driven: palyra.Palyra,
    driver: str,
    limit: dict[str, float],
) -> None:
    """Five calls timed out by the caller's own 10 ms against an upstream that
    answers in 50 ms leave the breaker closed and the health window empty."""
    for _ in range(5):
        # A 10 ms budget may run out before the request is even sent (a busy
        # machine connecting): the reply then waits for the next call.
        if not upstream.pending:
            upstream.enqueue(Reply(json=completion_json("late"), delay=0.05))
        with pytest.raises(palyra.APITimeoutError):
            await chat(driven, driver, USER, **limit)
    if not upstream.pending:
        upstream.enqueue(Reply(json=completion_json("fine")))
    reply = await chat(driven, driver, USER)
    assert reply.choices[0].message.content in ("late", "fine")
    (health,) = driven.health()
    assert health.state == "closed"
    assert (health.consecutive_failures, health.last_error) == (0, None)
    assert health.success_rate == 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_bad_headers_are_refused_and_never_open_the_breaker(
    upstream: Upstream, driven: palyra.Palyra, driver: str
) -> None:
    """A header with CRLF is the caller's mistake: a typed error before any
    send, however often, and the next valid call is served."""
    for _ in range(5):
        with pytest.raises(palyra.InvalidRequestError, match="x-trace"):
            await chat(driven, driver, USER, extra_headers={"x-trace": "abc\r\n"})
    assert upstream.requests == []
    assert driven.health() == []
    reply = await chat(driven, driver, USER)
    assert reply.choices[0].message.content


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_request_h11_refuses_is_not_retried_nor_counted(driver: str) -> None:
    """Should a request still be invalid HTTP (a transport refusing it as h11
    does), it is sent once, counted as the caller's, and its error quotes
    nothing of the request."""
    sent: list[int] = []

    class Refusing(httpx.BaseTransport, httpx.AsyncBaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(1)
            raise httpx.LocalProtocolError(
                f"Illegal header value b'Bearer {FAKE_KEY}\\n'"
            )

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return self.handle_request(request)

    config = _config("https://api.example.com/v1", api_key_env=None, auth_header="none")
    config["providers"][0]["max_retries"] = 2
    with palyra.Palyra(
        config, transport=Refusing(), async_transport=Refusing()
    ) as client:
        for _ in range(4):
            with pytest.raises(palyra.APIConnectionError) as info:
                await chat(client, driver, USER)
            assert "not valid HTTP" in str(info.value)
            assert FAKE_KEY not in repr(info.value)
        assert len(sent) == 4
        assert [h.consecutive_failures for h in client.health()] in ([], [0])
