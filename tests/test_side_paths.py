"""The key never leaks through side paths: request ids, error codes, headers
on errors, health, bad keys; status errors carry the wait and safe headers;
short dummy keys do not mangle text."""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest

import palyra
from palyra._utils import excerpt, redact
from tests.conftest import FAKE_KEY
from tests.helpers import DRIVERS, chat, completion_json, start_stream
from tests.upstream import Reply, Upstream

# No "sk-" prefix: only exact-key scrubbing can catch it.
KEY = "palyraSIDEkey0123456789abcdefXYZ"
USER = [{"role": "user", "content": "hi"}]


def _config(
    base_url: str = "https://api.example.com/v1", **provider: Any
) -> dict[str, Any]:
    entry = {"id": "up", "kind": "openai", "base_url": base_url, "max_retries": 0}
    return {
        "providers": [{**entry, "api_key_env": "UP_KEY", **provider}],
        "models": [{"id": "gpt-4o-mini", "provider": "up"}],
    }


def _clean(*values: object) -> None:
    for value in values:
        text = value if isinstance(value, str) else repr(value)
        assert KEY not in text
        assert KEY[6:24] not in text


def _echoing(status: int) -> httpx.MockTransport:
    """An upstream that puts the key it got everywhere it can."""

    def handle(request: httpx.Request) -> httpx.Response:
        sent = request.headers["authorization"].removeprefix("Bearer ")
        error = {"message": f"bad {sent}", "type": f"t_{sent}", "code": f"c-{sent}"}
        headers = {
            "x-request-id": f"req_{sent}",
            "x-echo": f"key={sent}",
            "set-cookie": f"session={sent}",
            "x-api-key": sent,
            "retry-after": "120",
        }
        if status < 400:
            return httpx.Response(status, json=completion_json("ok"), headers=headers)
        return httpx.Response(
            status, json={"error": error, sent: sent}, headers=headers
        )

    return httpx.MockTransport(handle)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("status", [400, 429, 500])
async def test_an_echoed_key_is_scrubbed_from_every_kept_string(
    monkeypatch: pytest.MonkeyPatch, driver: str, status: int
) -> None:
    monkeypatch.setenv("UP_KEY", KEY)
    transport = _echoing(status)
    async with palyra.Palyra(_config(), transport=transport) as client:
        with pytest.raises(palyra.APIStatusError) as info:
            await chat(client, driver, USER)
        error = info.value
        _clean(str(error), repr(error), error.message, error.body, error.code)
        _clean(error.type, error.request_id, error.headers, error.attempts)
        _clean(error.args, [h.last_error for h in client.health()])
        assert error.request_id == "req_<redacted>"
        assert error.attempts[0].request_id == "req_<redacted>"
        assert error.headers["x-echo"] == "key=<redacted>"
        assert "set-cookie" not in error.headers
        assert "x-api-key" not in error.headers


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_success_keeps_no_key_either(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    monkeypatch.setenv("UP_KEY", KEY)
    async with palyra.Palyra(_config(), transport=_echoing(200)) as client:
        reply = await chat(client, driver, USER)
    assert reply.palyra is not None
    _clean(reply.palyra.attempts, reply.model_dump_json())


def test_sk_pattern_after_an_underscore() -> None:
    secret = "sk-abcdefgh12345678"
    assert secret not in excerpt(f"request req_{secret} failed")
    assert redact(f"id=x_{secret}") == "id=x_<redacted>"


@pytest.mark.parametrize("dummy", ["test", "k", "abc1234"])
def test_short_dummy_keys_do_not_mangle_text(dummy: str) -> None:
    text = "The latest request failed: test key k was rejected"
    assert excerpt(text, (dummy,)) == text


def test_long_keys_are_removed_as_whole_tokens_only() -> None:
    key = "abcdEFGH1234"
    assert redact(f"got {key}, and req_{key}", (key,)) == (
        "got <redacted>, and req_<redacted>"
    )
    # Inside a longer run of letters and digits it is another word.
    assert redact(f"x{key}y", (key,)) == f"x{key}y"


BAD_KEYS = {
    "lf": (KEY[:10] + "\n" + KEY[10:], "control character|whitespace"),
    "nul": (KEY[:10] + "\x00" + KEY[10:], "control character"),
    "zwsp": (KEY + "\u200b", "invisible non-ASCII character"),
    "space": (KEY[:10] + " " + KEY[10:], "whitespace"),
    "accent": (KEY + "é", "non-ASCII character"),
}
# An environment variable cannot hold NUL: that pair is not a case.
CASES = [
    pytest.param(key, problem, source, id=f"{name}-{source}")
    for name, (key, problem) in BAD_KEYS.items()
    for source in ("env", "inline", "injected")
    if not (source == "env" and name == "nul")
]


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("key", "problem", "source"), CASES)
async def test_a_bad_key_is_a_credential_error_that_shows_nothing(
    monkeypatch: pytest.MonkeyPatch, driver: str, key: str, problem: str, source: str
) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))
    monkeypatch.setenv("UP_KEY", key if source == "env" else KEY)
    options: dict[str, Any] = {"transport": transport}
    config = _config()
    if source == "inline":
        config["providers"][0] = {**config["providers"][0], "api_key": key}
        del config["providers"][0]["api_key_env"]
    elif source == "injected":
        options["credentials"] = lambda provider: key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", palyra.InsecureConfigWarning)
        client = palyra.Palyra(config, **options)
    async with client:
        with pytest.raises(palyra.CredentialError, match=problem) as info:
            await chat(client, driver, USER)
    where = {"env": "UP_KEY", "inline": "inline api_key", "injected": "credentials="}
    assert where[source] in str(info.value)
    _clean(str(info.value), repr(info.value), info.value.args, info.value.__cause__)
    assert info.value.__context__ is None or KEY not in repr(info.value.__context__)
    assert sent == []


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param({"retry-after": "120"}, 120.0, id="seconds"),
        pytest.param({"retry-after-ms": "90000"}, 90.0, id="ms"),
        pytest.param({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="past"),
    ],
)
async def test_status_errors_carry_the_wait_and_headers(
    upstream: Upstream,
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
    headers: dict[str, str],
    wait: float,
) -> None:
    """Over the cap, palyra raises at once, and the caller can read the wait."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    config = _config(upstream.base_url, max_retries=2)
    config["resilience"] = {"retry_after_cap": 60}
    error = {"error": {"message": "slow down", "type": "rate_limit_error"}}
    upstream.enqueue(Reply(status=429, json=error, headers=headers))
    upstream.enqueue(Reply(json=completion_json("after")))
    client = palyra.Palyra(config, sleep=lambda s: None, async_sleep=_no_wait)
    async with client:
        if wait > 60:
            with pytest.raises(palyra.RateLimitError) as info:
                await chat(client, driver, USER)
            assert info.value.retry_after == wait
            assert info.value.status_code == 429
            assert info.value.request_id == "req_1"
            assert info.value.headers["x-request-id"] == "req_1"
            assert (
                "retry-after" in info.value.headers
                or "retry-after-ms" in info.value.headers
            )
            assert len(upstream.requests) == 1
        else:
            reply = await chat(client, driver, USER)
            assert reply.choices[0].message.content == "after"


async def _no_wait(seconds: float) -> None:
    """Retries without waiting."""


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_error_event_has_no_headers(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    event = json.dumps({"error": {"message": "busy", "type": "rate_limit_error"}})
    upstream.enqueue(Reply(sse=[event]))
    async with palyra.Palyra(_config(upstream.base_url)) as client:
        with pytest.raises(palyra.RateLimitError) as info:
            await start_stream(client, driver, USER)
    assert (info.value.retry_after, info.value.headers) == (None, {})
