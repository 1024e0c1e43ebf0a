"""The one retry layer, as the pipeline drives it (sync and async)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import palyra
from tests.helpers import ManualClock

USER = [{"role": "user", "content": "hi"}]
OK = {
    "id": "c",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
}


def _client(
    responses: list[httpx.Response],
    waits: list[float],
    clock: Any = None,
    **provider: Any,
):
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return responses.pop(0)

    config = {
        "providers": [
            {"id": "up", "kind": "openai", "auth_header": "none", **provider}
        ],
        "models": [{"id": "m", "provider": "up"}],
    }
    client = palyra.Palyra(
        config, transport=httpx.MockTransport(handler), sleep=waits.append, clock=clock
    )
    return client, sent


def test_retryable_error_then_success_records_both_attempts() -> None:
    """A 503 is retried after a backoff; attempts list both tries."""
    waits: list[float] = []
    client, sent = _client(
        [
            httpx.Response(503, json={"error": {"message": "busy"}}),
            httpx.Response(200, json=OK),
        ],
        waits,
    )
    with client:
        reply = client.chat(USER)
    assert reply.choices[0].message.content == "fine"
    assert reply.palyra is not None
    assert [a.outcome for a in reply.palyra.attempts] == ["error", "success"]
    assert reply.palyra.attempts[0].status_code == 503
    assert len(sent) == 2
    assert len(waits) == 1
    assert 0 < waits[0] <= 0.15


def test_retry_after_is_honoured() -> None:
    """The upstream's Retry-After sets the wait."""
    waits: list[float] = []
    limited = httpx.Response(
        429, json={"error": {"message": "slow"}}, headers={"retry-after": "2"}
    )
    client, _ = _client([limited, httpx.Response(200, json=OK)], waits)
    with client:
        client.chat(USER)
    assert waits == [2.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_request_errors_are_never_retried(status: int) -> None:
    """Errors caused by the request or the credential are raised at once."""
    waits: list[float] = []
    client, sent = _client(
        [httpx.Response(status, json={"error": {"message": "no"}})], waits
    )
    with client, pytest.raises(palyra.APIStatusError):
        client.chat(USER)
    assert len(sent) == 1
    assert waits == []


def test_max_retries_zero_makes_one_attempt() -> None:
    """max_retries = 0 turns retries off."""
    waits: list[float] = []
    client, sent = _client(
        [httpx.Response(500, json={"error": {"message": "x"}})], waits, max_retries=0
    )
    with client, pytest.raises(palyra.InternalServerError):
        client.chat(USER)
    assert len(sent) == 1


def test_stream_is_retried_before_its_first_chunk() -> None:
    """A stream whose request fails with 503 is retried, then streams."""
    waits: list[float] = []
    body = (
        'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"ok"},'
        '"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )
    client, _ = _client(
        [
            httpx.Response(503, json={"error": {"message": "busy"}}),
            httpx.Response(
                200, headers={"content-type": "text/event-stream"}, text=body
            ),
        ],
        waits,
    )
    with client, client.stream(USER) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "ok"
    assert len(waits) == 1


@pytest.mark.anyio
async def test_async_driver_sleeps_through_async_sleep() -> None:
    """achat waits with the injected async sleep."""
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    responses = [
        httpx.Response(502, json={"error": {"message": "x"}}),
        httpx.Response(200, json=OK),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return responses.pop(0)

    config = {
        "providers": [{"id": "up", "kind": "openai", "auth_header": "none"}],
        "models": [{"id": "m", "provider": "up"}],
    }
    async with palyra.Palyra(
        config, transport=httpx.MockTransport(handler), async_sleep=record
    ) as client:
        reply = await client.achat(USER)
    assert reply.choices[0].message.content == "fine"
    assert len(waits) == 1


def test_breaker_opens_then_lets_one_probe_through() -> None:
    """Three failed calls open the breaker; after the cooldown a probe closes it."""
    clock = ManualClock()
    failures = [httpx.Response(500, json={"error": {"message": "down"}})] * 3
    waits: list[float] = []
    client, sent = _client(
        [*failures, httpx.Response(200, json=OK)],
        waits,
        clock,
        max_retries=0,
        circuit_breaker_threshold=3,
        circuit_breaker_cooldown=30,
    )
    with client:
        for _ in range(3):
            with pytest.raises(palyra.InternalServerError):
                client.chat(USER)
        with pytest.raises(palyra.NoProviderAvailableError) as info:
            client.chat(USER)
        assert len(sent) == 3  # refused without an HTTP call
        assert info.value.retry_after == pytest.approx(30)
        [health] = client.health()
        assert (health.state, health.consecutive_failures) == ("open", 3)
        assert health.last_error is not None
        clock.now += 30
        reply = client.chat(USER)  # the half-open probe
        assert reply.choices[0].message.content == "fine"
        [health] = client.health()
    assert health.state == "closed"
    assert health.provider == "up"


def test_request_errors_do_not_open_the_breaker() -> None:
    """A rejected request is the caller's fault, not the provider's."""
    waits: list[float] = []
    bad = [httpx.Response(400, json={"error": {"message": "bad"}})] * 4
    client, _ = _client(bad, waits, circuit_breaker_threshold=1)
    with client:
        for _ in range(4):
            with pytest.raises(palyra.BadRequestError):
                client.chat(USER)
        [health] = client.health()
    assert health.state == "closed"
