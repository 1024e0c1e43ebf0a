"""Stream requests answered without an event stream.

Some OpenAI-compatible servers ignore ``stream: true`` and answer with one
JSON body. `stream_parser` picks the parser for what actually came back: the
dialect's SSE parser for ``text/event-stream``; `WholeAnswer` for JSON, which
serves a valid completion as a stream of chunks (usage included); and for any
other content type the SSE parser, watched so that a body with no event in it
is named by its content type instead of passing for a dropped connection.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from .._exceptions import APIResponseValidationError
from .._request import ChatRequest
from .._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionUsage,
)
from .accumulator import ChunkAccumulator
from .base import (
    ProviderAdapter,
    StreamParser,
    Target,
    error_from_payload,
    request_id,
    stream_error_status,
    too_large,
)

__all__ = ["WholeAnswer", "stream_parser"]


def stream_parser(
    adapter: ProviderAdapter,
    target: Target,
    request: ChatRequest,
    response: httpx.Response,
) -> StreamParser:
    """The parser for the body ``response`` actually carries."""
    media = _media_type(response)
    if media == "text/event-stream" or not media:
        return adapter.chat_stream(target, request)
    if media == "application/json" or media.endswith("+json"):
        return WholeAnswer(adapter, target, response, request.wants_usage_chunk)
    return _Foreign(adapter.chat_stream(target, request), target, response, media)


def _media_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";", 1)[0].strip().lower()


class WholeAnswer:
    """A stream request answered with one JSON body: the completion, served
    as the chunks a stream of it would have carried."""

    __slots__ = (
        "_adapter",
        "_forward_usage",
        "_parts",
        "_response",
        "_size",
        "_target",
        "accumulator",
    )

    def __init__(
        self,
        adapter: ProviderAdapter,
        target: Target,
        response: httpx.Response,
        forward_usage: bool,
    ) -> None:
        self._adapter = adapter
        self._target = target
        self._response = response
        self._forward_usage = forward_usage
        self._parts: list[bytes] = []
        self._size = 0
        self.accumulator = ChunkAccumulator()

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """Keep the body, up to ``limits.max_response_bytes``; chunks come
        once it is whole."""
        self._size += len(data)
        if self._size > self._target.limits.max_response_bytes:
            raise too_large(
                self._target,
                "max_response_bytes",
                "JSON answer to a stream request",
                request_id(self._response, self._target.secrets),
            )
        self._parts.append(data)
        return []

    def flush(self) -> list[ChatCompletionChunk]:
        """The completion's chunks (its usage in the last, if asked for)."""
        body = httpx.Response(
            200,
            headers=self._response.headers,
            content=b"".join(self._parts),
            request=self._response.request,
        )
        self._parts = []
        self._raise_error_body(body)
        try:
            completion = self._adapter.chat_response(self._target, body)
        except APIResponseValidationError as exc:
            exc.message = (
                "upstream answered a stream request with JSON that is not a chat"
                f" completion ({exc.message})"
            )
            raise
        chunks = chunks_of(completion)
        for chunk in chunks:
            self.accumulator.add(chunk)
        if completion.usage is not None and not self._forward_usage:
            return [c for c in chunks if c.choices]
        return chunks

    def _raise_error_body(self, body: httpx.Response) -> None:
        """A 2xx answer carrying an error object is that error."""
        if not body.content.lstrip().startswith(b"{"):
            return
        try:
            payload = json.loads(body.content)
        except ValueError:
            return  # chat_response names the problem
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            status = stream_error_status(payload["error"])
            raise error_from_payload(self._target, status, payload, request_id(body))

    def close(self) -> ChatCompletion:
        """The answer the chunks add up to."""
        return self.accumulator.completion()

    def partial(self) -> ChatCompletion:
        """The answer so far: empty until the body is whole."""
        return self.accumulator.completion()

    @property
    def usage(self) -> CompletionUsage | None:
        """The completion's usage, once the body is whole."""
        return self.accumulator.usage


def chunks_of(completion: ChatCompletion) -> list[ChatCompletionChunk]:
    """The chunks a stream of ``completion`` carries: per choice, its message
    in one delta, then its finish reason; then a usage-only chunk."""
    head: dict[str, Any] = {
        "id": completion.id,
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": completion.system_fingerprint,
    }
    chunks = []
    for choice in completion.choices:
        message = choice.message
        calls = [
            ChoiceDeltaToolCall(
                index=i,
                id=call.id,
                type="function",
                function=ChoiceDeltaToolCallFunction(
                    name=call.function.name, arguments=call.function.arguments
                ),
            )
            for i, call in enumerate(message.tool_calls or ())
        ]
        delta = ChoiceDelta(
            role="assistant",
            content=message.content,
            refusal=message.refusal,
            tool_calls=calls or None,
        )
        chunks.append(
            ChatCompletionChunk(
                **head, choices=[ChunkChoice(index=choice.index, delta=delta)]
            )
        )
        end = ChunkChoice(
            index=choice.index, finish_reason=choice.finish_reason or "stop"
        )
        chunks.append(ChatCompletionChunk(**head, choices=[end]))
    if completion.usage is not None:
        chunks.append(ChatCompletionChunk(**head, usage=completion.usage))
    return chunks


class _Foreign:
    """The SSE parser over a body of another content type: a body with no
    event in it is named by its content type, and is not retried."""

    __slots__ = ("_inner", "_media", "_response", "_seen", "_target")

    def __init__(
        self, inner: StreamParser, target: Target, response: httpx.Response, media: str
    ) -> None:
        self._inner = inner
        self._target = target
        self._response = response
        self._media = media
        self._seen = False

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        chunks = self._inner.feed(data)
        self._seen = self._seen or bool(chunks)
        return chunks

    def flush(self) -> list[ChatCompletionChunk]:
        chunks = self._inner.flush() if self._seen else self._quiet_flush()
        if not (self._seen or chunks):
            raise self._target.fail(
                APIResponseValidationError,
                f"upstream answered a stream request with {self._media}, not"
                " text/event-stream, and no event in it",
                request_id=request_id(self._response),
            )
        return chunks

    def _quiet_flush(self) -> list[ChatCompletionChunk]:
        try:
            return self._inner.flush()
        except APIResponseValidationError:
            raise
        except Exception:
            return []

    def close(self) -> ChatCompletion:
        return self._inner.close()

    def partial(self) -> ChatCompletion:
        return self._inner.partial()

    @property
    def usage(self) -> CompletionUsage | None:
        return self._inner.usage
