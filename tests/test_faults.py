"""Fault injection against real loopback servers: retries, failover, deadlines,
circuit breakers and secrets, through the public client.

Every test talks HTTP to one or two `tests.upstream.Upstream` servers on
127.0.0.1 (provider ``a`` serves model ``m1``, provider ``b`` its fallback
``m2``), with the sync driver and the async one. The servers check the API key,
so every request really carries it; backoffs are a few milliseconds and the
injected sleeps are recorded (and really slept). Tests that wait on purpose
(hangs, deadlines) run on a few driver/op pairs rather than all four.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import palyra
from tests import helpers
from tests.helpers import (
    DRIVERS,
    OPS,
    ManualClock,
    chunk_json,
    completion_json,
    drain,
    loopback_transports,
    texts,
)
from tests.upstream import (
    Reply,
    Upstream,
    anthropic_error_reply,
    error_reply,
    html_reply,
)

pytestmark = pytest.mark.e2e

SECRET = "sk-test-SECRET-abc123"
MESSAGES = [{"role": "user", "content": "hello fault world"}]
ANSWER = "hello fault world"  # the upstream echoes the last user message
A_UPSTREAM, B_UPSTREAM, CLAUDE = "gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5"
CALLERS = 50


def combos(*pairs: str) -> list[Any]:
    """Some ``driver-op`` pairs, for tests that wait on purpose (not all four)."""
    return [pytest.param(*pair.split("-"), id=pair) for pair in pairs]


AnyStream = palyra.Stream | palyra.AsyncStream
Row = tuple[str, str, str, str | None, int | None]


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Upstream, Upstream]]:
    """Two real servers, for providers ``a`` and ``b``, both expecting SECRET."""
    monkeypatch.setenv("FAULTS_A_KEY", SECRET)
    monkeypatch.setenv("FAULTS_B_KEY", SECRET)
    with Upstream(api_key=SECRET) as a, Upstream(api_key=SECRET) as b:
        yield a, b
    assert not a.errors, a.errors
    assert not b.errors, b.errors


@pytest.fixture(autouse=True)
def _debug_logs_never_hold_the_key(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test runs with DEBUG logging on; no log line may carry the key."""
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter("%(name)s %(message)s")
    for record in caplog.get_records("call"):
        assert SECRET not in formatter.format(record), record.name


class Waits(list[float]):
    """The waits between attempts, recorded and really slept."""

    def sleep(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(seconds)


def provider(pid: str, server: Upstream, kind: str, **opts: Any) -> dict[str, Any]:
    """A provider on ``server``, with fast retries and the usual breaker."""
    return {
        "id": pid,
        "kind": kind,
        "base_url": server.origin if kind == "anthropic" else server.base_url,
        "api_key_env": f"FAULTS_{pid.upper()}_KEY",
        "max_retries": 2,
        "retry_backoff": 0.01,
        "retry_backoff_max": 0.05,
        "timeout": 2,
        "circuit_breaker_threshold": 3,
        "circuit_breaker_cooldown": 30,
        **opts,
    }


def make_config(
    a: Upstream,
    b: Upstream | None = None,
    *,
    kind: str = "openai",
    fallbacks: tuple[str, ...] = ("m2",),
    a_opts: dict[str, Any] | None = None,
    resilience: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``m1`` on provider ``a`` (of ``kind``), and ``m2`` on ``b`` if given."""
    m1: dict[str, Any] = {
        "id": "m1",
        "provider": "a",
        "upstream_model": CLAUDE if kind == "anthropic" else A_UPSTREAM,
        "fallbacks": list(fallbacks),
    }
    if kind == "anthropic":
        m1["max_output_tokens"] = 1024
    providers = [provider("a", a, kind, **(a_opts or {}))]
    models = [m1]
    if b is not None:
        providers.append(provider("b", b, "openai"))
        models.append(
            {"id": "m2", "provider": "b", "upstream_model": B_UPSTREAM, "fallbacks": []}
        )
    return {
        "providers": providers,
        "models": models,
        "resilience": {
            "failover": True,
            "deadline": 5.0,
            "retry_after_cap": 60.0,
            **(resilience or {}),
        },
    }


def connect(
    config: dict[str, Any],
    waits: Waits | None = None,
    clock: ManualClock | None = None,
    limits: httpx.Limits | None = None,
) -> palyra.Palyra:
    """A client with recorded sleeps and cheap-to-build transports."""
    waits = Waits() if waits is None else waits
    pool: dict[str, Any] = {} if limits is None else {"limits": limits}
    return palyra.Palyra(
        config,
        **loopback_transports(**pool),
        sleep=waits.sleep,
        async_sleep=waits.asleep,
        clock=clock,
    )


async def chat(
    client: palyra.Palyra, driver: str, model: str = "m1", **options: Any
) -> palyra.ChatCompletion:
    """A chat call for `MESSAGES` through the chosen driver."""
    return await helpers.chat(client, driver, MESSAGES, model, **options)


async def open_stream(
    client: palyra.Palyra, driver: str, model: str = "m1", **options: Any
) -> AnyStream:
    """A stream for `MESSAGES`, opened through the chosen driver."""
    return await helpers.start_stream(client, driver, MESSAGES, model, **options)


async def run(
    client: palyra.Palyra, driver: str, op: str, **options: Any
) -> tuple[str, palyra.PalyraInfo]:
    """A whole answer, streamed or not: its text and how it was served."""
    if op == "chat":
        reply = await chat(client, driver, **options)
        assert reply.palyra is not None
        return reply.choices[0].message.content or "", reply.palyra
    stream = await open_stream(client, driver, **options)
    chunks: list[palyra.ChatCompletionChunk] = []
    await drain(stream, chunks)
    assert stream.completion is not None
    assert stream.completion.choices[0].message.content == "".join(texts(chunks))
    return "".join(texts(chunks)), stream.palyra


def rows(attempts: list[palyra.Attempt]) -> list[Row]:
    """(provider, model, outcome, failure, status) of each attempt."""
    return [
        (a.provider, a.model, a.outcome, a.failure, a.status_code) for a in attempts
    ]


def health_of(client: palyra.Palyra) -> dict[tuple[str, str], palyra.ModelHealth]:
    """``client.health()`` by (provider, model)."""
    return {(h.provider, h.model): h for h in client.health()}


def assert_no_secret(
    error: BaseException | None = None,
    *,
    attempts: Sequence[palyra.Attempt] = (),
    client: palyra.Palyra | None = None,
) -> None:
    """The key is nowhere a person or a log could see it."""
    shown: list[str] = []
    if error is not None:
        shown += [str(error), repr(error)]
        shown.append("".join(traceback.format_exception(error)))
        attempts = [*attempts, *getattr(error, "attempts", [])]
        shown += [repr(getattr(error, "body", None))]
    shown += [a.model_dump_json() for a in attempts]
    if client is not None:
        shown += [h.model_dump_json() for h in client.health()]
    for text in shown:
        assert SECRET not in text
        assert SECRET[3:] not in text  # not even without its "sk-" prefix


def server_error(status: int = 503, **kw: Any) -> Reply:
    """An OpenAI-style 5xx."""
    return error_reply(status, "upstream is struggling", type="server_error", **kw)


def elapsed_since(started: float) -> float:
    return time.perf_counter() - started


# -- 1. retryable statuses are retried -------------------------------------------------

RETRIED = [
    pytest.param(
        "openai",
        server_error(500),
        "InternalServerError",
        "server_error",
        500,
        None,
        id="500",
    ),
    pytest.param(
        "openai",
        server_error(503),
        "InternalServerError",
        "server_error",
        503,
        None,
        id="503",
    ),
    pytest.param(
        "openai",
        error_reply(529, "Overloaded", type="overloaded_error"),
        "OverloadedError",
        "overloaded",
        529,
        None,
        id="529",
    ),
    pytest.param(
        "anthropic",
        anthropic_error_reply(529, "overloaded_error", "Overloaded"),
        "OverloadedError",
        "overloaded",
        529,
        None,
        id="529-anthropic",
    ),
    pytest.param(
        "openai",
        error_reply(
            429,
            "Rate limit reached for requests",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": "0"},
        ),
        "RateLimitError",
        "rate_limited",
        429,
        0.0,
        id="429-retry-after-0",
    ),
    pytest.param(
        "anthropic",
        anthropic_error_reply(
            429, "rate_limit_error", "Slow down", headers={"retry-after": "0"}
        ),
        "RateLimitError",
        "rate_limited",
        429,
        0.0,
        id="429-anthropic-retry-after-0",
    ),
    pytest.param(
        "openai",
        server_error(503, headers={"retry-after-ms": "30"}),
        "InternalServerError",
        "server_error",
        503,
        0.03,
        id="503-retry-after-ms",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("kind", "reply", "error", "failure", "status", "retry_after"), RETRIED
)
async def test_retryable_status_is_retried_to_success(
    servers: tuple[Upstream, Upstream],
    driver: str,
    op: str,
    kind: str,
    reply: Reply,
    error: str,
    failure: str,
    status: int,
    retry_after: float | None,
) -> None:
    """One retryable failure, then success: two attempts on the same model,
    waiting the upstream's Retry-After when it gave one, else a short backoff."""
    a, b = servers
    a.enqueue(reply)
    waits = Waits()
    async with connect(make_config(a, b, kind=kind), waits) as client:
        text, info = await run(client, driver, op)
        health = health_of(client)[("a", "m1")]
    assert text == ANSWER
    assert (info.provider, info.model, info.requested_model) == ("a", "m1", "m1")
    assert rows(info.attempts) == [
        ("a", "m1", "error", failure, status),
        ("a", "m1", "success", None, 200),
    ]
    assert info.attempts[0].error == error
    assert [at.request_id for at in info.attempts] == ["req_1", "req_2"]
    assert len(a.requests) == 2
    assert not b.requests
    if retry_after is None:
        assert len(waits) == 1
        assert 0 < waits[0] <= 0.05
    else:
        assert waits == [pytest.approx(retry_after)]
    # A call counts once, however many attempts: the breaker saw a success.
    assert (health.state, health.consecutive_failures) == ("closed", 0)
    assert_no_secret(attempts=info.attempts, client=client)


# -- 2. Retry-After beyond the cap: no retry -------------------------------------------

OVER_CAP = [
    pytest.param({"Retry-After": "120"}, 60.0, id="retry-after-120s-cap-60s"),
    pytest.param({"retry-after-ms": "2000"}, 1.0, id="retry-after-ms-2000-cap-1s"),
]


def rate_limited(headers: dict[str, str]) -> Reply:
    return error_reply(
        429,
        "Rate limit reached",
        type="requests",
        code="rate_limit_exceeded",
        headers=headers,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("headers", "cap"), OVER_CAP)
async def test_retry_after_over_the_cap_fails_over_at_once(
    servers: tuple[Upstream, Upstream],
    driver: str,
    op: str,
    headers: dict[str, str],
    cap: float,
) -> None:
    """Asked to wait longer than retry_after_cap, palyra does not retry the
    provider: the fallback serves at once, without any sleep."""
    a, b = servers
    a.enqueue(rate_limited(headers))
    waits = Waits()
    config = make_config(a, b, resilience={"retry_after_cap": cap})
    started = time.perf_counter()
    async with connect(config, waits) as client:
        text, info = await run(client, driver, op)
    assert elapsed_since(started) < 1
    assert text == ANSWER
    assert (info.provider, info.model, info.requested_model) == ("b", "m2", "m1")
    assert rows(info.attempts) == [
        ("a", "m1", "error", "rate_limited", 429),
        ("b", "m2", "success", None, 200),
    ]
    assert info.attempts[0].error == "RateLimitError"
    assert waits == []
    assert len(a.requests) == 1
    assert [r.json()["model"] for r in b.requests] == [B_UPSTREAM]


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("headers", "cap"), OVER_CAP)
async def test_retry_after_over_the_cap_without_fallback_raises_at_once(
    servers: tuple[Upstream, Upstream],
    driver: str,
    op: str,
    headers: dict[str, str],
    cap: float,
) -> None:
    """Without a fallback the RateLimitError is raised at once: one request."""
    a, _ = servers
    a.enqueue(rate_limited(headers))
    waits = Waits()
    config = make_config(a, fallbacks=(), resilience={"retry_after_cap": cap})
    started = time.perf_counter()
    async with connect(config, waits) as client:
        with pytest.raises(palyra.RateLimitError) as info:
            await run(client, driver, op)
    assert elapsed_since(started) < 1
    exc = info.value
    assert (exc.provider, exc.model, exc.status_code) == ("a", "m1", 429)
    assert exc.request_id == "req_1"
    assert rows(exc.attempts) == [("a", "m1", "error", "rate_limited", 429)]
    assert waits == []
    assert len(a.requests) == 1
    assert_no_secret(exc)


# -- 3. hangs --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("driver", "op"), combos("sync-chat", "async-stream"))
async def test_hang_times_out_within_the_call_timeout(
    servers: tuple[Upstream, Upstream], driver: str, op: str
) -> None:
    """An upstream that never answers raises APITimeoutError after the call's
    0.3 s timeout, not the provider's 2 s."""
    a, _ = servers
    a.enqueue(Reply(hang=5))
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 0})
    started = time.perf_counter()
    async with connect(config) as client:
        with pytest.raises(palyra.APITimeoutError) as info:
            await run(client, driver, op, timeout=0.3)
    assert 0.25 <= elapsed_since(started) < 1.5
    exc = info.value
    assert (exc.provider, exc.model) == ("a", "m1")
    assert rows(exc.attempts) == [("a", "m1", "error", "timeout", None)]
    assert len(a.requests) == 1
    assert_no_secret(exc)


@pytest.mark.anyio
@pytest.mark.parametrize(("driver", "op"), combos("sync-stream", "async-chat"))
async def test_hang_fails_over(
    servers: tuple[Upstream, Upstream], driver: str, op: str
) -> None:
    """A hanging provider is left after its timeout; the fallback serves."""
    a, b = servers
    a.enqueue(Reply(hang=5))
    config = make_config(a, b, a_opts={"max_retries": 0})
    started = time.perf_counter()
    async with connect(config) as client:
        text, info = await run(client, driver, op, timeout=0.3)
    assert elapsed_since(started) < 1.5
    assert text == ANSWER
    assert info.model == "m2"
    assert rows(info.attempts) == [
        ("a", "m1", "error", "timeout", None),
        ("b", "m2", "success", None, 200),
    ]
    assert info.attempts[0].error == "APITimeoutError"
    assert (len(a.requests), len(b.requests)) == (1, 1)


# -- 4. connection resets --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_reset_is_retried(
    servers: tuple[Upstream, Upstream], driver: str, op: str
) -> None:
    """A TCP reset before any answer is retried on a new connection."""
    a, b = servers
    a.enqueue(Reply(reset=True))
    waits = Waits()
    async with connect(make_config(a, b), waits) as client:
        text, info = await run(client, driver, op)
    assert text == ANSWER
    assert rows(info.attempts) == [
        ("a", "m1", "error", "connection", None),
        ("a", "m1", "success", None, 200),
    ]
    assert info.attempts[0].error == "APIConnectionError"
    assert len(waits) == 1
    assert len(a.requests) == 2
    assert a.requests[0].connection != a.requests[1].connection
    assert not b.requests


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_repeated_resets_fail_over(
    servers: tuple[Upstream, Upstream], driver: str, op: str
) -> None:
    """Resets on every retry exhaust the provider; the fallback serves."""
    a, b = servers
    a.enqueue(*[Reply(reset=True)] * 3)
    waits = Waits()
    async with connect(make_config(a, b), waits) as client:
        text, info = await run(client, driver, op)
        health = health_of(client)
    assert text == ANSWER
    assert rows(info.attempts) == [
        *[("a", "m1", "error", "connection", None)] * 3,
        ("b", "m2", "success", None, 200),
    ]
    assert len(waits) == 2  # between the three attempts on a; none before b
    assert (len(a.requests), len(b.requests)) == (3, 1)
    # The three attempts were one failed call for a's breaker.
    assert health[("a", "m1")].consecutive_failures == 1
    assert health[("a", "m1")].last_error.startswith("APIConnectionError")
    assert health[("b", "m2")].consecutive_failures == 0


# -- 5. HTML error pages ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_html_error_page_is_retried(
    servers: tuple[Upstream, Upstream], driver: str, op: str
) -> None:
    """A proxy's 502 HTML page is a retryable server error."""
    a, b = servers
    a.enqueue(html_reply(502))
    async with connect(make_config(a, b)) as client:
        text, info = await run(client, driver, op)
    assert text == ANSWER
    assert rows(info.attempts) == [
        ("a", "m1", "error", "server_error", 502),
        ("a", "m1", "success", None, 200),
    ]
    assert len(a.requests) == 2


def html_soup() -> Reply:
    """A 50 kB HTML 502 page that echoes the key near its top."""
    filler = "".join(
        f'<div class="row-{i}"><span>upstream trace {i}</span></div>\n'
        for i in range(1000)
    )
    page = (
        "<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
        f"<body>\n<!-- proxy saw Authorization: Bearer {SECRET} -->\n"
        f"<h1>502 Bad Gateway</h1>\n<p>api_key={SECRET}</p>\n{filler}</body>\n</html>\n"
    )
    return Reply(status=502, body=page.encode(), content_type="text/html")


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_html_error_page_error_is_a_short_excerpt(
    servers: tuple[Upstream, Upstream], driver: str, op: str
) -> None:
    """When the HTML pages never stop, the error holds a one-line excerpt of
    the page, not the page, and never the key it echoed."""
    a, _ = servers
    a.enqueue(*[html_soup()] * 3)
    async with connect(make_config(a, fallbacks=())) as client:
        with pytest.raises(palyra.InternalServerError) as info:
            await run(client, driver, op)
        assert_no_secret(info.value, client=client)
    exc = info.value
    assert exc.status_code == 502
    assert len(a.requests) == 3  # retried like any 502
    assert rows(exc.attempts) == [("a", "m1", "error", "server_error", 502)] * 3
    assert "text/html" in exc.message
    assert "502 Bad Gateway" in exc.message
    assert "\n" not in str(exc)
    assert len(exc.message) <= 700  # of a 50 kB page
    assert "Bearer <redacted>" in exc.message
    assert "row-999" not in exc.message
    assert exc.body is None


# -- 6/7. broken streams ---------------------------------------------------------------


def keepalive_then(reply_events: list[str], **kw: Any) -> Reply:
    """An SSE body opening with a keep-alive comment, then data events."""
    raw = b": keep-alive\n\n" + b"".join(
        f"data: {e}\n\n".encode() for e in reply_events
    )
    return Reply(sse_raw=raw, **kw)


WHOLE = [chunk_json("one "), chunk_json("two "), chunk_json("three", "stop"), "[DONE]"]

BEFORE_FIRST_CHUNK = [
    pytest.param(
        Reply(sse=WHOLE, cut_after=0),
        {},
        palyra.StreamInterruptedError,
        "connection",
        id="cut-after-headers",
    ),
    pytest.param(
        keepalive_then(WHOLE, cut_after=1),
        {},
        palyra.StreamInterruptedError,
        "connection",
        id="cut-after-keepalive",
    ),
    pytest.param(
        Reply(sse=[]),
        {},
        palyra.StreamInterruptedError,
        "connection",
        id="ended-without-chunks",
    ),
    pytest.param(
        keepalive_then(WHOLE, chunk_delay=5),
        {"timeout": 0.2},
        palyra.APITimeoutError,
        "timeout",
        id="silent-after-keepalive",
    ),
    pytest.param(
        Reply(sse=[json.dumps({"error": {"message": "boom", "type": "server_error"}})]),
        {},
        palyra.InternalServerError,
        "server_error",
        id="error-event-first",
    ),
    pytest.param(
        Reply(sse=["{not json", *WHOLE]),
        {},
        palyra.APIResponseValidationError,
        "unknown",
        id="malformed-first",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("reply", "options", "cls", "failure"), BEFORE_FIRST_CHUNK)
async def test_stream_failure_before_the_first_chunk_fails_over(
    servers: tuple[Upstream, Upstream],
    driver: str,
    reply: Reply,
    options: dict[str, Any],
    cls: type[palyra.APIError],
    failure: str,
) -> None:
    """Nothing reached the caller yet: the fallback's stream serves, and
    `client.stream` returns it as if nothing happened."""
    a, b = servers
    a.enqueue(reply)
    config = make_config(a, b, a_opts={"max_retries": 0})
    async with connect(config) as client:
        stream = await open_stream(client, driver, **options)
        chunks: list[palyra.ChatCompletionChunk] = []
        await drain(stream, chunks)
    assert "".join(texts(chunks)) == ANSWER
    assert stream.completion is not None
    info = stream.palyra
    assert (info.provider, info.model, info.requested_model) == ("b", "m2", "m1")
    attempts = [(at.model, at.outcome, at.error, at.failure) for at in info.attempts]
    assert attempts == [
        ("m1", "error", cls.__name__, failure),
        ("m2", "success", None, None),
    ]
    assert (len(a.requests), len(b.requests)) == (1, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("reply", "options", "cls", "failure"), BEFORE_FIRST_CHUNK)
async def test_stream_failure_before_the_first_chunk_raises_from_stream(
    servers: tuple[Upstream, Upstream],
    driver: str,
    reply: Reply,
    options: dict[str, Any],
    cls: type[palyra.APIError],
    failure: str,
) -> None:
    """Without a fallback the failure raises from `client.stream` itself."""
    a, _ = servers
    a.enqueue(reply)
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 0})
    async with connect(config) as client:
        with pytest.raises(cls) as info:
            await open_stream(client, driver, **options)
    exc = info.value
    assert type(exc) is cls
    assert (exc.provider, exc.model) == ("a", "m1")
    assert [(at.outcome, at.failure) for at in exc.attempts] == [("error", failure)]
    assert len(a.requests) == 1
    assert_no_secret(exc)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_failing_before_its_first_chunk_names_its_own_request(
    servers: tuple[Upstream, Upstream], driver: str
) -> None:
    """A 503 (req_1), then a stream cut before its first chunk (req_2): the
    error and the second attempt name req_2, the response that opened it."""
    a, _ = servers
    a.enqueue(server_error(503), Reply(sse=WHOLE, cut_after=0))
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 1})
    async with connect(config) as client:
        with pytest.raises(palyra.StreamInterruptedError) as info:
            await open_stream(client, driver)
    exc = info.value
    assert rows(exc.attempts) == [
        ("a", "m1", "error", "server_error", 503),
        ("a", "m1", "error", "connection", 200),
    ]
    assert [at.request_id for at in exc.attempts] == ["req_1", "req_2"]
    assert exc.request_id == "req_2"


AFTER_FIRST_CHUNK = [
    pytest.param(
        Reply(sse=WHOLE, cut_after=2),
        {},
        palyra.StreamInterruptedError,
        "connection",
        ["one ", "two "],
        id="cut",
    ),
    pytest.param(
        Reply(sse=[*WHOLE[:2], "{not json", *WHOLE[2:]]),
        {},
        palyra.APIResponseValidationError,
        "unknown",
        ["one ", "two "],
        id="malformed",
    ),
    pytest.param(
        Reply(
            sse=[
                *WHOLE[:2],
                json.dumps({"error": {"message": "boom", "type": "server_error"}}),
            ]
        ),
        {},
        palyra.InternalServerError,
        "server_error",
        ["one ", "two "],
        id="error-event",
    ),
    pytest.param(
        Reply(sse=WHOLE[:2]),
        {},
        palyra.StreamInterruptedError,
        "connection",
        ["one ", "two "],
        id="ended-early",
    ),
    pytest.param(
        Reply(sse=WHOLE, chunk_delay=5),
        {"timeout": 0.2},
        palyra.APITimeoutError,
        "timeout",
        ["one "],
        id="went-silent",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("reply", "options", "cls", "failure", "received"), AFTER_FIRST_CHUNK
)
async def test_stream_failure_after_the_first_chunk_raises_from_the_iterator(
    servers: tuple[Upstream, Upstream],
    driver: str,
    reply: Reply,
    options: dict[str, Any],
    cls: type[palyra.APIError],
    failure: str,
    received: list[str],
) -> None:
    """Once chunks reached the caller it is too late to fail over: the iterator
    raises a typed error after the chunks, the stream never ends as complete,
    the fallback gets no request, and the breaker and health hear of it."""
    a, b = servers
    a.enqueue(reply)
    async with connect(make_config(a, b)) as client:
        stream = await open_stream(client, driver, **options)
        chunks: list[palyra.ChatCompletionChunk] = []
        with pytest.raises(cls) as info:
            await drain(stream, chunks)
        health = health_of(client)[("a", "m1")]
        assert_no_secret(info.value, client=client)
    assert texts(chunks) == received
    assert stream.completion is None
    assert stream.usage is None
    exc = info.value
    assert type(exc) is cls
    assert (exc.provider, exc.model, exc.request_id) == ("a", "m1", "req_1")
    assert len(a.requests) == 1  # never retried: chunks were already delivered
    assert not b.requests  # no failover mid-answer
    for attempts in (stream.palyra.attempts, exc.attempts):
        assert [(at.model, at.outcome, at.error, at.failure) for at in attempts] == [
            ("m1", "error", cls.__name__, failure)
        ]
    assert health.last_error is not None
    assert health.last_error.startswith(cls.__name__)
    assert health.consecutive_failures == 1
    assert health.calls >= 1


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_streams_failing_mid_answer_open_the_breaker(
    servers: tuple[Upstream, Upstream], driver: str
) -> None:
    """Three calls in a row whose streams break after the first chunk are three
    failed calls: the breaker opens and the fourth call is not sent."""
    a, _ = servers
    a.enqueue(*[Reply(sse=WHOLE, cut_after=1)] * 3)
    async with connect(make_config(a, fallbacks=())) as client:
        for _ in range(3):
            stream = await open_stream(client, driver)
            with pytest.raises(palyra.StreamInterruptedError):
                await drain(stream, [])
        health = health_of(client)[("a", "m1")]
        assert (health.consecutive_failures, health.calls) == (3, 3)
        assert health.status == "unhealthy"
        assert health.state == "open"
        with pytest.raises(palyra.NoProviderAvailableError):
            await open_stream(client, driver)
    assert len(a.requests) == 3


# -- 8. the call deadline --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("driver", "op", "where"),
    [
        pytest.param("sync", "chat", "per-call", id="sync-chat-per-call"),
        pytest.param("async", "stream", "config", id="async-stream-config"),
    ],
)
async def test_deadline_cuts_a_hanging_retry(
    servers: tuple[Upstream, Upstream], driver: str, op: str, where: str
) -> None:
    """Two quick 503s, then a hang: the third attempt's timeout is cut to the
    time left, and the call raises APITimeoutError naming the deadline, within
    the deadline, with every attempt recorded."""
    a, b = servers
    a.enqueue(server_error(503), server_error(503), *[Reply(hang=5)] * 4)
    resilience = {"deadline": 0.6} if where == "config" else {}
    options = {"deadline": 0.6} if where == "per-call" else {}
    config = make_config(a, b, a_opts={"max_retries": 5}, resilience=resilience)
    started = time.perf_counter()
    async with connect(config) as client:
        with pytest.raises(palyra.APITimeoutError) as info:
            await run(client, driver, op, **options)
    elapsed = elapsed_since(started)
    assert 0.5 <= elapsed < 1.2
    exc = info.value
    assert "deadline" in exc.message
    assert "0.6s" in exc.message
    assert (exc.provider, exc.model) == ("a", "m1")
    assert rows(exc.attempts) == [
        ("a", "m1", "error", "server_error", 503),
        ("a", "m1", "error", "server_error", 503),
        ("a", "m1", "error", "timeout", None),
    ]
    assert len(a.requests) == 3
    assert not b.requests  # no time was left for the fallback


@pytest.mark.anyio
@pytest.mark.parametrize(("driver", "op"), combos("sync-stream", "async-chat"))
async def test_deadline_bounds_repeated_hangs(
    servers: tuple[Upstream, Upstream], driver: str, op: str
) -> None:
    """An upstream hanging on every retry (0.25 s attempt timeout, five
    retries) is given up within the 0.6 s call deadline."""
    a, _ = servers
    a.enqueue(*[Reply(hang=5)] * 6)
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 5, "timeout": 0.25})
    started = time.perf_counter()
    async with connect(config) as client:
        with pytest.raises(palyra.APITimeoutError) as info:
            await run(client, driver, op, deadline=0.6)
    assert elapsed_since(started) < 1.2
    exc = info.value
    assert 2 <= len(exc.attempts) <= 3
    assert {(at.outcome, at.failure) for at in exc.attempts} == {("error", "timeout")}
    assert len(a.requests) == len(exc.attempts)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_deadline_message_counts_every_attempt(
    servers: tuple[Upstream, Upstream], driver: str
) -> None:
    """The deadline error's message counts the attempt the deadline cut short."""
    a, _ = servers
    a.enqueue(server_error(503), server_error(503), Reply(hang=5))
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 5})
    async with connect(config) as client:
        with pytest.raises(palyra.APITimeoutError) as info:
            await chat(client, driver, deadline=0.3)
    assert len(info.value.attempts) == 3
    assert "after 3 attempt(s)" in info.value.message


# -- 9. refused credentials ------------------------------------------------------------

REFUSED = [
    pytest.param(401, "auth_invalid", "AuthenticationError", id="401"),
    pytest.param(403, "permission", "PermissionDeniedError", id="403"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("status", "problem", "error"), REFUSED)
async def test_refused_credential_fails_over_and_is_marked(
    servers: tuple[Upstream, Upstream],
    driver: str,
    op: str,
    status: int,
    problem: str,
    error: str,
) -> None:
    """A refused key is not retried: the other provider serves, health marks
    the credential, and the provider's next success clears the mark."""
    a, b = servers
    if status == 401:
        a.api_key = "sk-test-ROTATED-999999"  # the upstream no longer takes SECRET
    else:
        a.enqueue(
            error_reply(403, "You may not use this model", type="permission_error")
        )
    waits = Waits()
    async with connect(make_config(a, b), waits) as client:
        text, info = await run(client, driver, op)
        health = health_of(client)
        assert text == ANSWER
        assert rows(info.attempts) == [
            ("a", "m1", "error", problem, status),
            ("b", "m2", "success", None, 200),
        ]
        assert info.attempts[0].error == error
        assert (len(a.requests), len(b.requests)) == (1, 1)  # no retry on a
        assert waits == []
        assert health[("a", "m1")].credential_problem == problem
        assert health[("b", "m2")].credential_problem is None
        assert_no_secret(attempts=info.attempts, client=client)

        a.api_key = SECRET  # the key works again
        text, info = await run(client, driver, op)
        health = health_of(client)
    assert text == ANSWER
    assert rows(info.attempts) == [("a", "m1", "success", None, 200)]
    assert health[("a", "m1")].credential_problem is None


# -- 10. request errors never fail over ------------------------------------------------

REQUEST_ERRORS = [
    pytest.param(400, palyra.BadRequestError, id="400"),
    pytest.param(413, palyra.RequestTooLargeError, id="413"),
    pytest.param(422, palyra.UnprocessableEntityError, id="422"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("status", "cls"), REQUEST_ERRORS)
async def test_request_error_is_neither_retried_nor_failed_over(
    servers: tuple[Upstream, Upstream],
    driver: str,
    op: str,
    status: int,
    cls: type[palyra.APIStatusError],
) -> None:
    """The request itself is at fault: any candidate would refuse it."""
    a, b = servers
    a.enqueue(error_reply(status, "Invalid value for 'temperature': 7 > 2"))
    waits = Waits()
    async with connect(make_config(a, b), waits) as client:
        with pytest.raises(cls) as info:
            await run(client, driver, op)
        health = health_of(client)
    exc = info.value
    assert type(exc) is cls
    assert rows(exc.attempts) == [("a", "m1", "error", "bad_request", status)]
    assert len(a.requests) == 1
    assert not b.requests
    assert waits == []
    assert health[("a", "m1")].consecutive_failures == 0  # the upstream answered


# -- secrets across a failover ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("driver", DRIVERS)
async def test_key_echoed_by_failing_upstreams_never_shows(
    servers: tuple[Upstream, Upstream],
    driver: str,
    op: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Upstreams echoing the key in every failure: the error, its attempts,
    health and DEBUG logs never show it (the key is sent, though)."""
    a, b = servers
    a.enqueue(error_reply(401, f"Incorrect API key provided: {SECRET}."))
    b.enqueue(
        error_reply(503, f"token={SECRET} overloaded", type="server_error"),
        Reply(status=502, body=f"Bearer {SECRET}".encode(), content_type="text/plain"),
        error_reply(500, f"key {SECRET} broke us", code=SECRET, param=SECRET),
    )
    async with connect(make_config(a, b)) as client:
        with pytest.raises(palyra.InternalServerError) as info:
            await run(client, driver, op)
        assert_no_secret(info.value, client=client)
    assert [r.headers["authorization"] for r in (*a.requests, *b.requests)] == [
        f"Bearer {SECRET}"
    ] * 4
    assert [(at.model, at.status_code) for at in info.value.attempts] == [
        ("m1", 401),
        ("m2", 503),
        ("m2", 502),
        ("m2", 500),
    ]
    assert "redacted" in str(info.value)
    palyra_logs = [r for r in caplog.records if r.name == "palyra"]
    assert len(palyra_logs) >= 4  # the check of the autouse fixture is not vacuous


# -- 11. fifty concurrent callers and the breaker --------------------------------------


async def burst(
    client: palyra.Palyra, driver: str, pool: ThreadPoolExecutor, n: int = CALLERS
) -> list[palyra.ChatCompletion | palyra.APIError]:
    """``n`` calls to m1 at once: threads released together by a barrier, or
    tasks gathered on the loop. Each gives its answer or its error."""
    if driver == "sync":
        barrier = threading.Barrier(n)

        def call() -> palyra.ChatCompletion | palyra.APIError:
            barrier.wait(timeout=10)
            try:
                return client.chat(MESSAGES, "m1")
            except palyra.APIError as exc:
                return exc

        futures = [pool.submit(call) for _ in range(n)]
        return [future.result(timeout=20) for future in futures]

    async def acall() -> palyra.ChatCompletion | palyra.APIError:
        try:
            return await client.achat(MESSAGES, "m1")
        except palyra.APIError as exc:
            return exc

    return list(await asyncio.gather(*(acall() for _ in range(n))))


def split(
    results: list[palyra.ChatCompletion | palyra.APIError],
) -> tuple[list[Any], list[palyra.NoProviderAvailableError], list[Any]]:
    """(answers, refusals without HTTP, other errors)."""
    answers = [r for r in results if isinstance(r, palyra.ChatCompletion)]
    refused = [r for r in results if isinstance(r, palyra.NoProviderAvailableError)]
    others = [r for r in results if not isinstance(r, palyra.ChatCompletion)]
    others = [r for r in others if not isinstance(r, palyra.NoProviderAvailableError)]
    return answers, refused, others


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_breaker_under_fifty_concurrent_callers(
    servers: tuple[Upstream, Upstream], driver: str
) -> None:
    """A provider that fails, then recovers, under 50 concurrent callers.

    1. The provider answers 503. A first wave of 5 concurrent callers reaches
       it (a closed breaker admits everyone: nothing has failed yet) and
       fails; the breaker opens after three failed calls (the late reports of
       the others do not open it again). The other 45 callers, arriving at
       once, are refused without HTTP; so are 50 more.
    2. After the cooldown, 50 callers at once: exactly one reaches the server
       as the half-open probe (slow, so all others arrive while it is
       pending); the other 49 are refused.
    3. The probe closed the breaker: 50 callers at once all succeed.
    """
    a, _ = servers
    clock = ManualClock()
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 0})
    first_wave = 5
    # httpcore 1.0.9's pool closes "surplus" idle keep-alive connections
    # (beyond 20 by default) and can close one it already handed to another
    # thread, which then fails with EBADF (encode/httpcore#1110). Keeping every
    # connection alive keeps that race out (palyra's own clients use these
    # limits; this test builds its own transports, so it sets them too).
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with ThreadPoolExecutor(CALLERS) as pool:
        async with connect(config, clock=clock, limits=limits) as client:
            # -- phase 1: the provider starts failing
            # Slow enough that all five are admitted before any failure counts.
            failing = server_error(503)
            failing.delay = 0.1
            a.enqueue(*[failing] * first_wave)
            results = await burst(client, driver, pool, first_wave)
            assert all(isinstance(r, palyra.InternalServerError) for r in results)
            results += await burst(client, driver, pool, CALLERS - first_wave)
            answers, refused, failed = split(results)
            assert (len(answers), len(refused), len(failed)) == (0, 45, 5), failed
            assert len(a.requests) == first_wave  # 45 of 50 callers sent nothing
            health = health_of(client)[("a", "m1")]
            assert (health.state, health.opens) == ("open", 1)
            assert health.consecutive_failures == 3
            assert health.reopens_in == pytest.approx(30)

            answers, refused, failed = split(await burst(client, driver, pool))
            assert (len(answers), len(refused), len(failed)) == (0, CALLERS, 0)
            assert len(a.requests) == first_wave  # refused without any HTTP
            for exc in refused:
                assert exc.retry_after == pytest.approx(30)
                assert (exc.provider, exc.model) == ("a", "m1")
                assert [(at.outcome, at.error) for at in exc.attempts] == [
                    ("skipped", "NoProviderAvailableError")
                ]

            # -- phase 2: the provider recovers; the cooldown passes
            assert a.pending == 0
            before = len(a.requests)
            a.enqueue(Reply(json=completion_json("probe ok"), delay=0.4))
            clock.now += 30
            assert health_of(client)[("a", "m1")].state == "half_open"
            answers, refused, failed = split(await burst(client, driver, pool))
            assert len(a.requests) - before == 1  # exactly one probe
            assert not failed
            assert [r.choices[0].message.content for r in answers] == ["probe ok"]
            assert len(refused) == CALLERS - 1
            assert all(r.retry_after == pytest.approx(30) for r in refused)
            health = health_of(client)[("a", "m1")]
            assert (health.state, health.consecutive_failures) == ("closed", 0)

            # -- phase 3: closed again, everyone is served
            before = len(a.requests)
            answers, refused, failed = split(await burst(client, driver, pool))
            assert (len(answers), len(refused), len(failed)) == (CALLERS, 0, 0), failed
            assert {r.choices[0].message.content for r in answers} == {ANSWER}
            assert len(a.requests) - before == CALLERS
            health = health_of(client)[("a", "m1")]
            assert (health.state, health.opens) == ("closed", 1)
            assert_no_secret(client=client)


# -- streams and the deadline ----------------------------------------------------------


def _gapped(gap: float) -> Reply:
    """A keep-alive, then ``gap`` seconds between each of the later events."""
    events = [chunk_json("hel"), chunk_json("lo", "stop"), "[DONE]"]
    raw = b": keep-alive\n\n" + b"".join(f"data: {e}\n\n".encode() for e in events)
    return Reply(sse_raw=raw, chunk_delay=gap)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_deadline_bounds_a_silent_first_chunk(
    servers: tuple[Upstream, Upstream], driver: str
) -> None:
    """Headers and a keep-alive arrive, then nothing: the call's deadline (not
    the provider's 10 s timeout) ends the wait for the first chunk."""
    a, _ = servers
    a.enqueue(_gapped(3.0))
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 0, "timeout": 10})
    started = time.perf_counter()
    async with connect(config) as client:
        with pytest.raises(palyra.APITimeoutError) as info:
            await open_stream(client, driver, deadline=0.5)
    assert 0.4 <= elapsed_since(started) < 1.5
    assert "call deadline of 0.5s passed after 1 attempt(s)" in info.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_after_the_first_chunk_the_provider_timeout_bounds_each_wait(
    servers: tuple[Upstream, Upstream], driver: str
) -> None:
    """A 0.5 s deadline covers getting the first chunk; later gaps of 0.8 s
    are within the provider's timeout, so the answer completes."""
    a, _ = servers
    events = [chunk_json("hel"), chunk_json("lo", "stop"), "[DONE]"]
    a.enqueue(Reply(sse=events, chunk_delay=0.8))
    config = make_config(a, fallbacks=(), a_opts={"max_retries": 0, "timeout": 10})
    async with connect(config) as client:
        stream = await open_stream(client, driver, deadline=0.5)
        chunks: list[palyra.ChatCompletionChunk] = []
        await drain(stream, chunks)
    assert "".join(texts(chunks)) == "hello"
