"""The OpenAI-compatible dialect: Chat Completions, Embeddings, Transcriptions."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from .._exceptions import (
    APIResponseValidationError,
    APIStatusError,
    StreamInterruptedError,
)
from .._request import (
    CallOptions,
    ChatRequest,
    EmbeddingsRequest,
    TranscriptionRequest,
)
from .._tokens import TokenCounter
from .._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    EmbeddingResponse,
    ProviderModel,
    Transcription,
)
from .base import (
    USER_AGENT,
    InProcessTransport,
    SSEChunkParser,
    Target,
    auth_headers,
    encode_json,
    error_from_payload,
    models_page,
    parse_json,
    request_id,
    status_error_from_response,
    stream_error_status,
    timeout_for,
)
from .sse import ServerSentEvent

__all__ = ["OpenAIAdapter", "OpenAIStreamParser", "create"]

M = TypeVar("M", bound=BaseModel)

_JSON_HEADERS = {"content-type": "application/json", "user-agent": USER_AGENT}


def create(counter: Callable[[], TokenCounter]) -> OpenAIAdapter:
    """The adapter for ``openai_compatible`` providers (no token counter needed)."""
    return OpenAIAdapter()


class OpenAIAdapter:
    """Speaks the OpenAI REST dialect to ``{base_url}/chat/completions`` etc."""

    def __init__(self) -> None:
        # Parsing a URL string costs more than the rest of building a request.
        self._urls: dict[tuple[str, str], httpx.URL] = {}

    def base_url(self, target: Target) -> str:
        """Where the provider's API lives."""
        return target.model.provider.effective_base_url

    def local_transport(self, target: Target) -> InProcessTransport | None:
        """Over the network: no in-process upstream."""
        return None

    def _request(
        self,
        target: Target,
        path: str,
        call_headers: Any,
        timeout: dict[str, float],
        method: str = "POST",
        **kw: Any,
    ) -> httpx.Request:
        # httpx.Headers merges case-insensitively: no header is ever sent twice.
        # (An update costs as much as a header set: empty ones are skipped.)
        headers = httpx.Headers(kw.pop("headers", {}))
        for extra in (
            target.model.provider.headers,
            auth_headers(target),
            call_headers,
        ):
            if extra:
                headers.update(extra)
        key = (self.base_url(target), path)
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = httpx.URL(key[0] + path)
        return httpx.Request(
            method,
            url,
            headers=headers,
            extensions={"timeout": timeout},
            **kw,
        )

    def chat_request(self, target: Target, request: ChatRequest) -> httpx.Request:
        """Build ``POST /chat/completions``; streams always ask for usage."""
        payload: dict[str, Any] = {
            "model": target.model.upstream,
            "messages": request.messages,
            **request.body,
        }
        if request.stream:
            payload["stream"] = True
            if target.model.provider.stream_usage:
                payload["stream_options"] = {
                    **(request.body.get("stream_options") or {}),
                    "include_usage": True,
                }
        payload.update(request.call.extra_body)
        return self._request(
            target,
            "/chat/completions",
            request.call.extra_headers,
            timeout_for(target, request.call),
            headers=_JSON_HEADERS,
            content=encode_json(payload),
        )

    def chat_response(self, target: Target, response: httpx.Response) -> ChatCompletion:
        """Validate a chat completion body."""
        result = _validated(ChatCompletion, response.content)
        if result is not None and result.choices:
            return result
        if result is not None:
            raise target.fail(
                APIResponseValidationError,
                "upstream chat response has no choices (an answer with nothing in it)",
                request_id=request_id(response),
            )
        payload = parse_json(target, response, "chat")
        raise target.fail(
            APIResponseValidationError,
            f"upstream chat response is not a chat completion: {payload}",
            request_id=request_id(response),
        )

    def chat_stream(self, target: Target, request: ChatRequest) -> OpenAIStreamParser:
        """A parser for ``text/event-stream`` chat chunks."""
        return OpenAIStreamParser(target, forward_usage=request.wants_usage_chunk)

    def embeddings_request(
        self, target: Target, request: EmbeddingsRequest
    ) -> httpx.Request:
        """Build ``POST /embeddings`` with float vectors."""
        payload: dict[str, Any] = {
            "model": target.model.upstream,
            "input": request.inputs,
            "encoding_format": "float",
        }
        dimensions = request.dimensions or target.model.entry.dimensions
        if dimensions is not None:
            payload["dimensions"] = dimensions
        payload.update(request.call.extra_body)
        return self._request(
            target,
            "/embeddings",
            request.call.extra_headers,
            timeout_for(target, request.call),
            headers=_JSON_HEADERS,
            content=encode_json(payload),
        )

    def embeddings_response(
        self, target: Target, request: EmbeddingsRequest, response: httpx.Response
    ) -> EmbeddingResponse:
        """Validate vectors: one per input, in range, same size, finite."""
        payload = parse_json(target, response, "embeddings")
        result = _validated(EmbeddingResponse, payload)
        if result is None:
            raise target.fail(
                APIResponseValidationError,
                f"upstream embeddings response has the wrong shape: {payload}",
                request_id=request_id(response),
            )
        expected = request.dimensions or target.model.entry.dimensions
        problem = _embedding_problem(result, len(request.inputs), expected)
        if problem:
            raise target.fail(
                APIResponseValidationError,
                f"upstream embeddings are invalid: {problem}",
                request_id=request_id(response),
            )
        result.data.sort(key=lambda item: item.index)
        return result

    def transcription_request(
        self, target: Target, request: TranscriptionRequest
    ) -> httpx.Request:
        """Build a multipart ``POST /audio/transcriptions``."""
        fields = _form_fields(
            {
                "model": target.model.upstream,
                "response_format": request.response_format,
                **request.fields,
                **request.call.extra_body,
            }
        )
        files = {"file": (request.filename, request.content, request.content_type)}
        return self._request(
            target,
            "/audio/transcriptions",
            request.call.extra_headers,
            timeout_for(target, request.call),
            headers={"user-agent": USER_AGENT},
            data=fields,
            files=files,
        )

    def transcription_response(
        self, target: Target, request: TranscriptionRequest, response: httpx.Response
    ) -> Transcription:
        """Parse a json / verbose_json / text transcription."""
        if request.response_format == "text":
            return Transcription(text=response.text.strip())
        payload = parse_json(target, response, "transcription")
        result = _validated(Transcription, payload)
        if result is None:
            raise target.fail(
                APIResponseValidationError,
                f"upstream transcription has the wrong shape: {payload}",
                request_id=request_id(response),
            )
        return result

    def models_request(self, target: Target, cursor: str | None) -> httpx.Request:
        """``GET /models`` (OpenAI lists every model on one page)."""
        return self._request(
            target,
            "/models",
            {},
            timeout_for(target, CallOptions()),
            method="GET",
            headers={"user-agent": USER_AGENT},
        )

    def models_response(
        self, target: Target, response: httpx.Response
    ) -> tuple[list[ProviderModel], str | None]:
        """All models; there is no next page."""
        payload = parse_json(target, response, "models")
        items = payload.get("data") if isinstance(payload, dict) else None
        return models_page(target, response, items), None

    def count_tokens_request(
        self, target: Target, request: ChatRequest
    ) -> httpx.Request | None:
        """OpenAI has no token-count endpoint: the local estimate stands."""
        return None

    def count_tokens_response(self, target: Target, response: httpx.Response) -> int:
        """Never called: `count_tokens_request` builds no request."""
        raise NotImplementedError

    def status_error(self, target: Target, response: httpx.Response) -> APIStatusError:
        """Map an OpenAI error envelope (or any other body) to the error tree."""
        return status_error_from_response(target, response)


def _form_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Multipart fields: lists as repeated ``name[]`` parts, as OpenAI expects."""
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, list | tuple):
            fields[f"{name}[]"] = [str(item) for item in value]
        else:
            fields[name] = str(value)
    return fields


def _validated(model: type[M], data: Any) -> M | None:
    """Validate upstream data, or None; the failure (which quotes the upstream
    body, credentials included) is dropped so no error chain can carry it."""
    try:
        if isinstance(data, bytes | str):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError:
        return None


def _embedding_problem(
    result: EmbeddingResponse, count: int, dimensions: int | None
) -> str | None:
    if len(result.data) != count:
        return f"{len(result.data)} vectors for {count} inputs"
    seen: set[int] = set()
    size = dimensions or len(result.data[0].embedding)
    for item in result.data:
        if not 0 <= item.index < count or item.index in seen:
            return f"index {item.index} is out of range or repeated"
        seen.add(item.index)
        if len(item.embedding) != size or not size:
            return (
                f"vector {item.index} has {len(item.embedding)} dimensions, not {size}"
            )
        if not all(math.isfinite(x) for x in item.embedding):
            return f"vector {item.index} holds a non-finite number"
    return None


class OpenAIStreamParser(SSEChunkParser):
    """Incremental parser of an OpenAI ``chat.completion.chunk`` event stream."""

    __slots__ = ("_done",)

    def __init__(self, target: Target, *, forward_usage: bool) -> None:
        super().__init__(target, forward_usage=forward_usage)
        self._done = False

    def _events(self, events: list[ServerSentEvent]) -> list[ChatCompletionChunk]:
        chunks = []
        for event in events:
            if self._done:
                continue
            if event.data == "[DONE]":
                self._done = True
                continue
            chunk = self._chunk(event.data, event.event)
            self.accumulator.add(chunk)
            # Usage was requested upstream for palyra's own accounting; callers
            # get the usage-only chunk only if they asked for it, as with OpenAI.
            if chunk.choices or self._forward_usage:
                chunks.append(chunk)
        return chunks

    def _chunk(self, data: str, event: str) -> ChatCompletionChunk:
        if event != "error":
            chunk = _validated(ChatCompletionChunk, data)
            if chunk is not None:
                return chunk
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and (event == "error" or "error" in payload):
            error = payload.get("error", payload)
            status = stream_error_status(error)
            raise error_from_payload(self._target, status, payload, None)
        raise self._target.fail(
            APIResponseValidationError,
            f"malformed event in upstream stream: {data}",
        )

    def close(self) -> ChatCompletion:
        """End of body: the assembled answer, or `StreamInterruptedError`."""
        leftover = self._sse.close()
        finished = self._done or (self.accumulator.finished and not leftover)
        if self.accumulator.chunks == 0 and self._done:
            raise self._target.fail(
                APIResponseValidationError,
                "upstream stream ended with [DONE] but carried no chunk",
            )
        if not finished:
            why = (
                "an unfinished event was left over"
                if self.accumulator.finished
                else "no finish_reason and no [DONE]"
            )
            raise self._target.fail(
                StreamInterruptedError,
                f"upstream stream ended before completion ({why} after"
                f" {self.accumulator.chunks} chunks); the answer is partial",
            )
        return self.accumulator.completion()
