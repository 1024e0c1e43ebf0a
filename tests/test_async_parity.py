"""The sync and async drivers of `palyra.Palyra` are twins.

Same parameters for every method pair, and the same results and errors for the
same scenario, whether served by a real loopback upstream or the in-process
deterministic provider.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import completion_json, loopback_transports, upstream_config
from tests.upstream import Reply, Upstream, error_reply, load_recorded

DRIVERS = ("sync", "async")
MESSAGES = [{"role": "user", "content": "Say hello to the twins"}]
AUDIO = ("clip.mp3", b"ID3" + bytes(range(64)))
PAIRS = [
    pytest.param("chat", "achat", id="chat"),
    pytest.param("stream", "astream", id="stream"),
    pytest.param("embed", "aembed", id="embed"),
    pytest.param("transcribe", "atranscribe", id="transcribe"),
    pytest.param("close", "aclose", id="close"),
    pytest.param("provider_models", "aprovider_models", id="provider_models"),
    pytest.param("count_tokens", "acount_tokens", id="count_tokens"),
    pytest.param("route", "aroute", id="route"),
]
# Only the stream classes differ between the twins' return types.
RETURN_TWINS = {"Stream": "AsyncStream"}


# -- signatures ----------------------------------------------------------------


def public_methods() -> set[str]:
    """Names of the public methods of `palyra.Palyra`."""
    return {
        name
        for name, member in inspect.getmembers(palyra.Palyra, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_async_method_has_a_sync_twin() -> None:
    """Each public coroutine method ``a<name>`` has a sync ``<name>``, and the
    known pairs are all there."""
    names = public_methods()
    coroutines = {
        name
        for name in names
        if inspect.iscoroutinefunction(getattr(palyra.Palyra, name))
    }
    twins = {name: name[1:] for name in coroutines}
    assert all(name.startswith("a") for name in coroutines)
    assert set(twins.values()) <= names
    assert twins == {
        "achat": "chat",
        "astream": "stream",
        "aembed": "embed",
        "atranscribe": "transcribe",
        "aclose": "close",
        "aprovider_models": "provider_models",
        "acount_tokens": "count_tokens",
        "aroute": "route",
    }


@pytest.mark.parametrize(("sync_name", "async_name"), PAIRS)
def test_twin_signatures_match(sync_name: str, async_name: str) -> None:
    """A sync method and its async twin take exactly the same parameters."""
    sync_method = getattr(palyra.Palyra, sync_name)
    async_method = getattr(palyra.Palyra, async_name)
    assert not inspect.iscoroutinefunction(sync_method)
    assert inspect.iscoroutinefunction(async_method)
    sync_sig = inspect.signature(sync_method)
    async_sig = inspect.signature(async_method)
    assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values())
    returned = str(sync_sig.return_annotation)
    assert RETURN_TWINS.get(returned, returned) == str(async_sig.return_annotation)


# -- scenarios -----------------------------------------------------------------


def embeddings_json() -> dict[str, Any]:
    """A fixed embeddings body with its vectors out of order."""
    return {
        "object": "list",
        "model": "emb",
        "data": [
            {"object": "embedding", "index": i, "embedding": [i / 10] * 8}
            for i in (1, 0)
        ],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }


TEXT_A = load_recorded("openai/chat_stream_text_a.sse")
TOOL_CALL = load_recorded("openai/chat_stream_tool_call_a.sse")

UPSTREAM_SCENARIOS = [
    pytest.param("chat", [Reply(json=completion_json("Hi!"))], "ok", id="chat"),
    pytest.param("stream", [Reply(sse_raw=TEXT_A)], "ok", id="stream"),
    pytest.param("stream", [Reply(sse_raw=TOOL_CALL)], "ok", id="stream-tool-call"),
    pytest.param("embed", [Reply(json=embeddings_json())], "ok", id="embed"),
    pytest.param("transcribe", [], "ok", id="transcribe"),
    pytest.param(
        "chat",
        [error_reply(429, "Rate limit reached", type="rate_limit_error", code="rl")],
        "RateLimitError",
        id="chat-429",
    ),
    pytest.param(
        "stream",
        [error_reply(429, "Rate limit reached", type="rate_limit_error", code="rl")],
        "RateLimitError",
        id="stream-429",
    ),
    pytest.param(
        "embed",
        [error_reply(429, "Rate limit reached", type="rate_limit_error")],
        "RateLimitError",
        id="embed-429",
    ),
    pytest.param(
        "stream",
        [Reply(sse_raw=TEXT_A, cut_after=6)],
        "StreamInterruptedError",
        id="stream-truncated",
    ),
    pytest.param(
        "stream",
        [
            Reply(
                sse=[json.dumps({"error": {"message": "boom", "type": "server_error"}})]
            )
        ],
        "InternalServerError",
        id="stream-error-event",
    ),
    pytest.param(
        "chat",
        [Reply(body=b"not json", content_type="text/plain")],
        "APIResponseValidationError",
        id="chat-not-json",
    ),
    # httpx's async errors have empty messages; the reason is in their causes.
    pytest.param("chat", [Reply(reset=True)], "APIConnectionError", id="chat-reset"),
    pytest.param(
        "stream", [Reply(reset=True)], "APIConnectionError", id="stream-reset"
    ),
]


UPSTREAM_MODELS = {
    "chat": "gpt-4o-mini",
    "stream": "gpt-4o-mini",
    "embed": "emb",
    "transcribe": "whisper-1",
}
DETERMINISTIC_MODELS = {
    "chat": "deterministic-chat",
    "stream": "deterministic-chat",
    "embed": "deterministic-embeddings",
}


def info_of(info: palyra.PalyraInfo | None) -> dict[str, Any]:
    """The ``palyra`` field without its timings."""
    assert info is not None
    return info.model_dump(
        exclude={"latency_ms": True, "attempts": {"__all__": {"latency_ms"}}}
    )


def error_of(exc: palyra.PalyraError) -> dict[str, Any]:
    """Everything an error tells the caller."""
    return {
        "class": type(exc).__name__,
        "str": str(exc),
        "message": getattr(exc, "message", None),
        "status_code": getattr(exc, "status_code", None),
        "request_id": getattr(exc, "request_id", None),
        "code": getattr(exc, "code", None),
        "type": getattr(exc, "type", None),
        "body": getattr(exc, "body", None),
    }


async def outcome(
    client: palyra.Palyra, driver: str, op: str, model: str
) -> dict[str, Any]:
    """Run one operation through one driver; describe what the caller sees."""
    chunks: list[palyra.ChatCompletionChunk] = []
    result: Any = None
    info: palyra.PalyraInfo | None = None
    try:
        if op == "chat":
            if driver == "sync":
                result = client.chat(MESSAGES, model, temperature=0)
            else:
                result = await client.achat(MESSAGES, model, temperature=0)
        elif op == "stream":
            if driver == "sync":
                with client.stream(MESSAGES, model) as stream:
                    chunks.extend(stream)
            else:
                async with await client.astream(MESSAGES, model) as astream:
                    async for chunk in astream:
                        chunks.append(chunk)
                stream = astream  # type: ignore[assignment]
            result, info = stream.completion, stream.palyra
        elif op == "embed":
            inputs = ["first text", "second text"]
            if driver == "sync":
                result = client.embed(inputs, model)
            else:
                result = await client.aembed(inputs, model)
        else:
            if driver == "sync":
                result = client.transcribe(AUDIO, model, response_format="verbose_json")
            else:
                result = await client.atranscribe(
                    AUDIO, model, response_format="verbose_json"
                )
    except palyra.PalyraError as exc:
        return {
            "chunks": [chunk.model_dump() for chunk in chunks],
            "error": error_of(exc),
        }
    return {
        "chunks": [chunk.model_dump() for chunk in chunks],
        "result": result.model_dump(exclude={"palyra"}),
        "palyra": info_of(info or result.palyra),
    }


def normalized(request: Any) -> tuple[str, str, dict[str, str], bytes]:
    """A recorded request with its per-connection details removed."""
    headers = dict(request.headers)
    headers.pop("host")
    content_type = headers.get("content-type", "")
    body = request.body
    match = re.search(r"boundary=(\S+)", content_type)
    if match:
        boundary = match.group(1)
        headers["content-type"] = content_type.replace(boundary, "BOUNDARY")
        body = body.replace(boundary.encode(), b"BOUNDARY")
    return request.method, request.path, headers, body


def expect(result: dict[str, Any], expected: str) -> None:
    """The outcome is the expected success or error class."""
    got = result["error"]["class"] if "error" in result else "ok"
    assert got == expected, result


async def both_drivers(
    op: str, replies: list[Reply]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]]]:
    """The outcome of one scenario per driver, and the requests each sent."""
    results: dict[str, dict[str, Any]] = {}
    requests: dict[str, list[Any]] = {}
    for driver in DRIVERS:
        # A fresh server per driver, so request ids line up too.
        with Upstream(api_key=FAKE_KEY) as upstream:
            upstream.enqueue(*replies)
            async with palyra.Palyra(
                upstream_config(upstream.base_url),
                **loopback_transports(),
            ) as client:
                results[driver] = await outcome(client, driver, op, UPSTREAM_MODELS[op])
            assert upstream.pending == 0
            requests[driver] = [normalized(r) for r in upstream.requests]
        assert not upstream.errors
    return results, requests


@pytest.mark.anyio
@pytest.mark.parametrize(("op", "replies", "expected"), UPSTREAM_SCENARIOS)
async def test_upstream_scenarios_match(
    monkeypatch: pytest.MonkeyPatch, op: str, replies: list[Reply], expected: str
) -> None:
    """A scenario against the loopback upstream gives equal results or errors
    through the sync and async drivers, from equal upstream requests."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    results, requests = await both_drivers(op, replies)
    expect(results["sync"], expected)
    assert results["async"] == results["sync"]
    assert requests["async"] == requests["sync"]
    assert len(requests["sync"]) == 1


def script_nothing(backend: Any) -> None:
    """Let the deterministic provider echo."""


def script_reply(backend: Any) -> None:
    """A scripted text answer."""
    backend.enqueue("Scripted answer with several words in it")


def script_tool_call(backend: Any) -> None:
    """A scripted tool call."""
    backend.enqueue(tool_calls=[{"name": "lookup", "arguments": {"q": "twins"}}])


def script_refusal(backend: Any) -> None:
    """A scripted refusal."""
    backend.enqueue(refusal="I can't help with that.")


def script_429(backend: Any) -> None:
    """A scripted rate limit."""
    backend.enqueue(status=429, error="Rate limit reached for requests", times=3)


def script_500(backend: Any) -> None:
    """A scripted server error."""
    backend.enqueue(status=500, error="The server had an error", times=3)


DETERMINISTIC_SCENARIOS = [
    pytest.param("chat", script_nothing, "ok", id="chat-echo"),
    pytest.param("chat", script_reply, "ok", id="chat-scripted"),
    pytest.param("chat", script_tool_call, "ok", id="chat-tool-call"),
    pytest.param("chat", script_refusal, "ok", id="chat-refusal"),
    pytest.param("chat", script_429, "RateLimitError", id="chat-429"),
    pytest.param("stream", script_reply, "ok", id="stream-scripted"),
    pytest.param("stream", script_tool_call, "ok", id="stream-tool-call"),
    pytest.param("stream", script_500, "InternalServerError", id="stream-500"),
    pytest.param("embed", script_nothing, "ok", id="embed"),
    pytest.param("embed", script_429, "RateLimitError", id="embed-429"),
]


def _no_sleep(seconds: float) -> None:
    """Retries without waiting."""


async def _no_async_sleep(seconds: float) -> None:
    """Retries without waiting."""


@pytest.mark.anyio
@pytest.mark.parametrize(("op", "script", "expected"), DETERMINISTIC_SCENARIOS)
async def test_deterministic_scenarios_match(
    op: str, script: Callable[[Any], None], expected: str
) -> None:
    """A scenario on the deterministic provider gives equal results or errors
    through the sync and async drivers, from equal upstream requests."""
    results: dict[str, dict[str, Any]] = {}
    history: dict[str, list[dict[str, Any]]] = {}
    for driver in DRIVERS:
        async with palyra.Palyra(
            sleep=_no_sleep, async_sleep=_no_async_sleep
        ) as client:
            backend = client.deterministic()
            script(backend)
            results[driver] = await outcome(
                client, driver, op, DETERMINISTIC_MODELS[op]
            )
            history[driver] = backend.history
    expect(results["sync"], expected)
    assert results["async"] == results["sync"]
    assert history["async"] == history["sync"]
    # One request, or three when a retryable error is retried (max_retries = 2).
    assert len(history["sync"]) == (1 if expected == "ok" else 3)
