"""Helpers the test modules share: one call through either driver, draining a
stream, a mock upstream that serves a body in pieces, a clock tests move by
hand, and cheap-to-build transports."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
import pytest

import palyra

DRIVERS = [pytest.param("sync", id="sync"), pytest.param("async", id="async")]
OPS = [pytest.param("chat", id="chat"), pytest.param("stream", id="stream")]

AnyStream = palyra.Stream | palyra.AsyncStream
Chunks = list[palyra.ChatCompletionChunk]
SSE_HEADERS = {"content-type": "text/event-stream"}

# Building an httpx client loads the CA bundle (~40 ms). Loopback upstreams speak
# plain HTTP, so tests share one TLS context through injected transports.
TLS = ssl.create_default_context()


def loopback_transports(**pool: Any) -> dict[str, Any]:
    """``transport`` and ``async_transport`` for `Palyra`, cheap to build."""
    return {
        "transport": httpx.HTTPTransport(verify=TLS, **pool),
        "async_transport": httpx.AsyncHTTPTransport(verify=TLS, **pool),
    }


# -- one call, either driver -------------------------------------------------------


async def chat(
    client: palyra.Palyra,
    driver: str,
    messages: list[dict[str, Any]],
    model: str | None = None,
    **options: Any,
) -> palyra.ChatCompletion:
    """A non-streaming chat call through the chosen driver."""
    if driver == "sync":
        return client.chat(messages, model, **options)
    return await client.achat(messages, model, **options)


async def start_stream(
    client: palyra.Palyra,
    driver: str,
    messages: list[dict[str, Any]],
    model: str | None = None,
    **options: Any,
) -> AnyStream:
    """Open a stream through the chosen driver (read up to its first chunk)."""
    if driver == "sync":
        return client.stream(messages, model, **options)
    return await client.astream(messages, model, **options)


async def drain(stream: AnyStream, into: Chunks | None = None) -> Chunks:
    """Read every chunk (into ``into``, kept if the iterator raises), then close."""
    chunks = [] if into is None else into
    if isinstance(stream, palyra.AsyncStream):
        async with stream:
            async for chunk in stream:
                chunks.append(chunk)
    else:
        with stream:
            for chunk in stream:
                chunks.append(chunk)
    return chunks


async def close(stream: AnyStream) -> None:
    """Close a stream, sync or async."""
    if isinstance(stream, palyra.AsyncStream):
        await stream.aclose()
    else:
        stream.close()


def texts(chunks: Chunks) -> list[str]:
    """The text pieces of the chunks."""
    return [c.choices[0].delta.content or "" for c in chunks if c.choices]


# -- upstreams ---------------------------------------------------------------------


def upstream_config(base_url: str, key_env: str = "UP_KEY") -> dict[str, Any]:
    """Chat, embeddings and transcription models on one OpenAI-compatible
    upstream, one attempt per call (every scripted reply maps to one call)."""
    provider = {
        "id": "up",
        "kind": "openai",
        "base_url": base_url,
        "api_key_env": key_env,
        "timeout": 2,
        "max_retries": 0,
    }
    return {
        "providers": [provider],
        "models": [
            {"id": "gpt-4o-mini", "provider": "up", "context_window": 128000},
            {"id": "emb", "provider": "up", "role": "embeddings", "dimensions": 8},
            {"id": "whisper-1", "provider": "up", "role": "audio_transcription"},
        ],
    }


# -- upstream bodies -----------------------------------------------------------------


def chunk_json(content: str | None = None, finish: str | None = None) -> str:
    """One OpenAI ``chat.completion.chunk`` event payload."""
    delta = {} if content is None else {"content": content}
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def completion_json(content: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """One OpenAI ``chat.completion`` body."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


class PieceTransport:
    """A mock upstream serving one body in small pieces, as a network would.

    It records every request and counts the pieces it has sent, so a test can
    tell how far a reader got before it stopped. ``transports`` gives the
    ``transport`` and ``async_transport`` arguments of `Palyra`.
    """

    def __init__(
        self,
        raw: bytes,
        size: int,
        headers: Mapping[str, str] = SSE_HEADERS,
    ) -> None:
        self.pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
        self.headers = dict(headers)
        self.requests: list[httpx.Request] = []
        self.sent = 0

    def _iter(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.sent += 1
            yield piece

    async def _aiter(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.sent += 1
            yield piece

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Sync handler: the body is a generator of pieces."""
        self.requests.append(request)
        return httpx.Response(200, headers=self.headers, content=self._iter())

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        """Async handler: the body is an async generator of pieces."""
        self.requests.append(request)
        return httpx.Response(200, headers=self.headers, content=self._aiter())

    def transports(self) -> dict[str, Any]:
        """Keyword arguments for `Palyra`: this upstream, sync and async."""
        return {
            "transport": httpx.MockTransport(self.handler),
            "async_transport": httpx.MockTransport(self.ahandler),
        }

    def body(self) -> dict[str, Any]:
        """The JSON body of the only request."""
        assert len(self.requests) == 1
        return json.loads(self.requests[0].content)  # type: ignore[no-any-return]


# -- time ------------------------------------------------------------------------------


class ManualClock:
    """Monotonic seconds that move only when a test (or its fake sleep) says so.

    Pass the clock as ``Palyra(clock=)`` and its ``sleep`` / ``asleep`` as the
    sleeps: retries and cooldowns then take no real time.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """A fake `time.sleep`: records the wait and moves the clock."""
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        """A fake `asyncio.sleep`."""
        self.sleep(seconds)
