"""The ``limits`` caps end to end, with both drivers: a body past
``max_response_bytes`` or a stream event past ``max_event_bytes`` raises
`ResponseTooLargeError` naming the cap, reading stops there, and it counts
against the provider without a retry."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    PieceTransport,
    chat,
    chunk_json,
    completion_json,
    drain,
    start_stream,
    texts,
    upstream_config,
)
from tests.upstream import Reply, Upstream, anthropic_sse

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

USER = [{"role": "user", "content": "hi"}]
CAP = 4096
LIMITS = {"max_event_bytes": CAP, "max_response_bytes": CAP}


def _config(base_url: str) -> dict[str, Any]:
    config = upstream_config(base_url)
    config["providers"][0]["max_retries"] = 2  # a retry would show as a request
    return {**config, "limits": LIMITS}


async def _no_wait(seconds: float) -> None:
    """Retries without waiting."""


@pytest.fixture(name="client")
async def client_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> AsyncIterator[palyra.Palyra]:
    """A client of the loopback upstream with 4 KiB caps."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client = palyra.Palyra(
        _config(upstream.base_url), async_sleep=_no_wait, sleep=lambda s: None
    )
    yield client
    if driver == "async":
        await client.aclose()
    else:
        client.close()


def _json_of_size(size: int) -> bytes:
    """A chat completion of exactly ``size`` bytes (trailing spaces pad it)."""
    body = json.dumps(completion_json("x" * (size // 2))).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def _check(error: palyra.ResponseTooLargeError, setting: str, what: str = "") -> None:
    """The error names the provider, the model, the cap's key and its value."""
    assert (error.limit, error.setting) == (CAP, setting)
    assert (error.provider, error.model) == ("up", "gpt-4o-mini")
    assert isinstance(error, palyra.APIResponseValidationError)
    text = str(error)
    assert f"is larger than limits.{setting} ({CAP} bytes)" in text
    assert "provider=up, model=gpt-4o-mini" in text
    assert what in text


def _counted_once(client: palyra.Palyra, upstream: Upstream) -> None:
    """Not retried, and the provider's failure."""
    assert len(upstream.requests) == 1
    (health,) = client.health()
    assert health.consecutive_failures == 1


# -- whole answers ---------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_body_at_the_cap_is_read(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    upstream.enqueue(Reply(body=_json_of_size(CAP), content_type="application/json"))
    answer = await chat(client, driver, USER)
    assert answer.choices[0].message.content == "x" * (CAP // 2)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_body_past_the_cap_raises(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """One byte more is `ResponseTooLargeError`, not retried, counted."""
    body = _json_of_size(CAP + 1)
    upstream.enqueue(Reply(body=body, content_type="application/json"))
    with pytest.raises(palyra.ResponseTooLargeError) as info:
        await chat(client, driver, USER)
    _check(info.value, "max_response_bytes", "upstream response body")
    assert info.value.request_id == "req_1"
    assert [a.error for a in info.value.attempts] == ["ResponseTooLargeError"]
    _counted_once(client, upstream)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_the_cap_bounds_the_decoded_body(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """A compressed body is held to the cap once decoded: a gzip of a few
    hundred bytes that inflates past it raises; one that fits is read."""
    small = gzip.compress(_json_of_size(CAP))
    large = gzip.compress(_json_of_size(CAP * 100))
    assert len(large) < CAP
    for body in (small, large):
        reply = Reply(
            body=body,
            content_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )
        upstream.enqueue(reply)
    answer = await chat(client, driver, USER)
    assert answer.choices[0].message.content == "x" * (CAP // 2)
    with pytest.raises(palyra.ResponseTooLargeError):
        await chat(client, driver, USER)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_body_that_does_not_decode_is_not_retried(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """Read decoded, a body its content encoding cannot undo is an answer of
    the wrong shape (as it was when read raw), not a broken connection."""
    upstream.enqueue(
        Reply(
            body=b"not gzip at all",
            content_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )
    )
    with pytest.raises(palyra.APIResponseValidationError, match="content-encoding"):
        await chat(client, driver, USER)
    _counted_once(client, upstream)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_reading_stops_at_the_cap(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    """The rest of a body past the cap is never read: of a 1 MiB body in
    1 KiB pieces, no more than the cap's worth (plus one) is taken."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    body = _json_of_size(1024 * 1024)
    upstream = PieceTransport(body, 1024, {"content-type": "application/json"})
    config = _config("https://api.example.com/v1")
    config["providers"][0]["max_retries"] = 0
    client = palyra.Palyra(config, **upstream.transports())
    with pytest.raises(palyra.ResponseTooLargeError):
        await chat(client, driver, USER)
    assert upstream.sent == CAP // 1024 + 1


@pytest.mark.parametrize("driver", DRIVERS)
async def test_an_in_memory_body_is_held_to_the_cap(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    """A transport that answers from memory (a mock, the deterministic
    upstream) gets the same cap as the network."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_json_of_size(CAP + 1))

    mock = httpx.MockTransport(answer)
    config = _config("https://api.example.com/v1")
    client = palyra.Palyra(config, transport=mock, async_transport=mock)
    with pytest.raises(palyra.ResponseTooLargeError):
        await chat(client, driver, USER)
    local = palyra.Palyra({"limits": LIMITS})
    local.deterministic().enqueue("y" * CAP)
    with pytest.raises(palyra.ResponseTooLargeError) as info:
        await chat(local, driver, USER)
    assert info.value.provider == "deterministic"
    local.deterministic().enqueue("y" * (CAP // 2))
    assert (await chat(local, driver, USER)).choices[0].message.content


@pytest.mark.parametrize("driver", DRIVERS)
async def test_error_bodies_are_still_cut_not_refused(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """An error page past the cap is the status error it carries (its body
    is cut at 64 KiB as before), not a size error."""
    page = b"<html>" + b"x" * (CAP * 4) + b"</html>"
    upstream.enqueue(Reply(status=400, body=page, content_type="text/html"))
    with pytest.raises(palyra.BadRequestError):
        await chat(client, driver, USER)


# -- streams ---------------------------------------------------------------------


def _event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_an_event_past_the_cap_before_the_first_chunk(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """The call raises: nothing reached the caller. Not retried, counted."""
    huge = chunk_json("x" * CAP)
    upstream.enqueue(Reply(sse_raw=_event(huge) + _event("[DONE]")))
    with pytest.raises(palyra.ResponseTooLargeError) as info:
        await start_stream(client, driver, USER)
    _check(info.value, "max_event_bytes", "upstream stream event")
    _counted_once(client, upstream)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_an_event_past_the_cap_mid_stream(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """The iterator raises after the chunks that came before it."""
    raw = _event(chunk_json("Hel")) + _event(chunk_json("lo"))
    raw += _event(chunk_json("x" * CAP)) + _event("[DONE]")
    upstream.enqueue(Reply(sse_raw=raw, chunk_delay=0.01))
    stream = await start_stream(client, driver, USER)
    chunks: list[palyra.ChatCompletionChunk] = []
    with pytest.raises(palyra.ResponseTooLargeError) as info:
        await drain(stream, chunks)
    _check(info.value, "max_event_bytes")
    assert info.value.request_id == "req_1"
    assert "".join(texts(chunks)) == "Hello"
    _counted_once(client, upstream)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_an_event_at_the_cap_is_read(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """An event of exactly the cap (its line, ``data: `` included) passes."""
    base = chunk_json("")
    event = chunk_json("x" * (CAP - len("data: ") - len(base)))
    assert len(b"data: " + event.encode()) == CAP
    finish = chunk_json(finish="stop")
    upstream.enqueue(Reply(sse_raw=_event(event) + _event(finish) + _event("[DONE]")))
    chunks = await drain(await start_stream(client, driver, USER))
    assert len("".join(texts(chunks))) == CAP - len("data: ") - len(base)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_data_lines_that_never_end_their_event(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """``data:`` lines with no blank line between them make one ever-growing
    event: it raises at the cap."""
    upstream.enqueue(Reply(sse_raw=b"data: x\n" * 10_000))
    with pytest.raises(palyra.ResponseTooLargeError) as info:
        await start_stream(client, driver, USER)
    assert info.value.setting == "max_event_bytes"


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_json_answer_to_a_stream_request_is_held_to_the_cap(
    upstream: Upstream, client: palyra.Palyra, driver: str
) -> None:
    """A stream request answered with one JSON body: at the cap it is served
    as a stream, past it it raises naming ``max_response_bytes``."""
    upstream.enqueue(Reply(body=_json_of_size(CAP), content_type="application/json"))
    upstream.enqueue(
        Reply(body=_json_of_size(CAP + 1), content_type="application/json")
    )
    chunks = await drain(await start_stream(client, driver, USER))
    assert "".join(texts(chunks)) == "x" * (CAP // 2)
    with pytest.raises(palyra.ResponseTooLargeError) as info:
        await start_stream(client, driver, USER)
    _check(info.value, "max_response_bytes", "JSON answer to a stream request")
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("driver", DRIVERS)
async def test_the_anthropic_dialect_has_the_same_cap(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    """Anthropic's named events go through the same decoder and cap."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    provider = {
        "id": "ant",
        "kind": "anthropic",
        "base_url": upstream.origin,
        "api_key_env": "UP_KEY",
        "max_retries": 0,
    }
    config = {
        "providers": [provider],
        "models": [{"id": "claude", "provider": "ant"}],
        "limits": LIMITS,
    }
    client = palyra.Palyra(config)
    delta = {"index": 0, "delta": {"type": "text_delta", "text": "x" * CAP}}
    upstream.enqueue(anthropic_sse([("content_block_delta", delta)]))
    with pytest.raises(palyra.ResponseTooLargeError) as info:
        await start_stream(client, driver, USER)
    assert (info.value.provider, info.value.setting) == ("ant", "max_event_bytes")
    if driver == "async":
        await client.aclose()
    else:
        client.close()
