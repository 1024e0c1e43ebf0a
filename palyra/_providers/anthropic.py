"""The Anthropic Messages dialect behind the OpenAI-shaped client: the adapter.

It builds the HTTP requests (``/v1/messages``, model pages, ``count_tokens``)
with Anthropic's headers and turns answers and error envelopes into palyra's
results and errors. The translation itself is pure and table-tested in
`anthropic_messages`; streaming lives in `anthropic_stream`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .._exceptions import (
    APIResponseValidationError,
    APIStatusError,
    OverloadedError,
    UnsupportedCapabilityError,
)
from .._request import (
    CallOptions,
    ChatRequest,
    EmbeddingsRequest,
    TranscriptionRequest,
)
from .._tokens import TokenCounter
from .._wire import ChatCompletion, EmbeddingResponse, ProviderModel, Transcription
from .anthropic_messages import (
    DEFAULT_MAX_TOKENS,
    check_thinking,
    completion_from_message,
    messages_payload,
)
from .anthropic_stream import AnthropicStreamParser, Malformed
from .base import (
    USER_AGENT,
    InProcessTransport,
    Target,
    encode_json,
    models_page,
    parse_json,
    request_id,
    status_error_from_response,
    timeout_for,
)

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicAdapter", "create", "messages_payload"]

API_VERSION = "2023-06-01"
OAUTH_BETA = "oauth-2025-04-20"
MODELS_PAGE_SIZE = 100


def create(counter: Callable[[], TokenCounter]) -> AnthropicAdapter:
    """The adapter for ``anthropic`` providers (no token counter needed)."""
    return AnthropicAdapter()


class AnthropicAdapter:
    """Speaks the Anthropic Messages API to ``{base_url}/v1/messages``."""

    def __init__(self) -> None:
        self._urls: dict[str, httpx.URL] = {}

    def local_transport(self, target: Target) -> InProcessTransport | None:
        """Over the network: no in-process upstream."""
        return None

    def chat_request(self, target: Target, request: ChatRequest) -> httpx.Request:
        """Build ``POST /v1/messages``."""
        payload = messages_payload(target, request)
        payload.update(request.call.extra_body)
        check_thinking(payload, explicit_max=bool(request.requested_output_tokens))
        return self._post(target, "/v1/messages", payload, request)

    def chat_response(self, target: Target, response: httpx.Response) -> ChatCompletion:
        """Translate a Messages API answer into a `ChatCompletion`."""
        payload = parse_json(target, response, "messages")
        problem = "content is not a list of blocks"
        if isinstance(payload, dict) and isinstance(payload.get("content"), list):
            try:
                return completion_from_message(payload)
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                # Named by field, never quoted: the value may hold anything.
                problem = str(exc) if isinstance(exc, Malformed) else type(exc).__name__
        raise target.fail(
            APIResponseValidationError,
            f"upstream messages response is not a valid message ({problem})",
            request_id=request_id(response),
        )

    def chat_stream(
        self, target: Target, request: ChatRequest
    ) -> AnthropicStreamParser:
        """A parser for Anthropic's named stream events."""
        return AnthropicStreamParser(target, forward_usage=request.wants_usage_chunk)

    def embeddings_request(
        self, target: Target, request: EmbeddingsRequest
    ) -> httpx.Request:
        """Anthropic has no embeddings endpoint."""
        raise _unsupported(target, "embeddings")

    def embeddings_response(
        self, target: Target, request: EmbeddingsRequest, response: httpx.Response
    ) -> EmbeddingResponse:
        """Anthropic has no embeddings endpoint."""
        raise _unsupported(target, "embeddings")

    def transcription_request(
        self, target: Target, request: TranscriptionRequest
    ) -> httpx.Request:
        """Anthropic has no transcription endpoint."""
        raise _unsupported(target, "audio_transcription")

    def transcription_response(
        self, target: Target, request: TranscriptionRequest, response: httpx.Response
    ) -> Transcription:
        """Anthropic has no transcription endpoint."""
        raise _unsupported(target, "audio_transcription")

    def models_request(self, target: Target, cursor: str | None) -> httpx.Request:
        """One page of ``GET /v1/models``, after ``cursor``."""
        params = {"limit": str(MODELS_PAGE_SIZE)}
        if cursor is not None:
            params["after_id"] = cursor
        return httpx.Request(
            "GET",
            self._url(target, "/v1/models"),
            params=params,
            headers=_headers(target, {}),
            extensions={"timeout": timeout_for(target, CallOptions())},
        )

    def models_response(
        self, target: Target, response: httpx.Response
    ) -> tuple[list[ProviderModel], str | None]:
        """A page of models and the id to continue after, when there are more."""
        payload = parse_json(target, response, "models")
        if not isinstance(payload, dict):
            payload = {}
        page = models_page(target, response, payload.get("data"))
        more = payload.get("has_more") and payload.get("last_id")
        return page, str(more) if more else None

    def count_tokens_request(
        self, target: Target, request: ChatRequest
    ) -> httpx.Request | None:
        """``POST /v1/messages/count_tokens`` for the same body a call would send."""
        payload = messages_payload(target, request)
        for name in ("max_tokens", "stream", "stop_sequences", "temperature", "top_p"):
            payload.pop(name, None)
        payload.pop("metadata", None)
        return self._post(target, "/v1/messages/count_tokens", payload, request)

    def count_tokens_response(self, target: Target, response: httpx.Response) -> int:
        """``input_tokens`` of the count."""
        payload = parse_json(target, response, "count_tokens")
        count = payload.get("input_tokens") if isinstance(payload, dict) else None
        if not isinstance(count, int):
            raise target.fail(
                APIResponseValidationError,
                f"upstream token count has no input_tokens: {payload}",
                request_id=request_id(response),
            )
        return count

    def status_error(self, target: Target, response: httpx.Response) -> APIStatusError:
        """Map ``{"type": "error", "error": {...}}`` (or any body) to the tree."""
        error = status_error_from_response(target, response)
        if error.type == "overloaded_error" and not isinstance(error, OverloadedError):
            # Gateways in front of Anthropic relay overload with 500 or 503.
            return target.fail(  # type: ignore[return-value]
                OverloadedError,
                error.message,
                status_code=error.status_code,
                request_id=error.request_id,
                body=error.body,
                code=error.code,
                type=error.type,
            )
        return error

    def _post(
        self, target: Target, path: str, payload: dict[str, Any], request: ChatRequest
    ) -> httpx.Request:
        return httpx.Request(
            "POST",
            self._url(target, path),
            headers=_headers(target, request.call.extra_headers),
            content=encode_json(payload),
            extensions={"timeout": timeout_for(target, request.call)},
        )

    def _url(self, target: Target, path: str) -> httpx.URL:
        # The paths carry /v1; a base URL that ends in it too is a common slip.
        base = target.model.provider.effective_base_url.removesuffix("/v1")
        url = self._urls.get(base + path)
        if url is None:
            url = self._urls[base + path] = httpx.URL(base + path)
        return url


def _headers(target: Target, extra: Mapping[str, str]) -> httpx.Headers:
    headers = httpx.Headers(
        {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "anthropic-version": API_VERSION,
        }
    )
    style = target.model.provider.effective_auth_header
    betas: list[str] = []
    if target.credential is not None and style == "bearer":
        # OAuth access tokens (and Anthropic-compatible third parties) use Bearer.
        headers["authorization"] = f"Bearer {target.credential}"
        betas.append(OAUTH_BETA)
    elif target.credential is not None and style == "x-api-key":
        headers["x-api-key"] = target.credential
    for source in (target.model.provider.headers, extra):
        if source:  # an update costs as much as a header set
            headers.update(source)
    # Betas from config and caller add to the OAuth one instead of replacing it.
    for source in (target.model.provider.headers, extra):
        for name, value in source.items():
            if name.lower() == "anthropic-beta":
                betas.extend(v.strip() for v in value.split(",") if v.strip())
    if betas:
        headers["anthropic-beta"] = ",".join(dict.fromkeys(betas))
    return headers


def _unsupported(target: Target, capability: str) -> UnsupportedCapabilityError:
    return UnsupportedCapabilityError(
        f"anthropic providers do not serve {capability.replace('_', ' ')}",
        capability=capability,
        provider=target.model.provider.id,
        model=target.model.id,
    )
