"""The provider adapter contract and what adapters share.

An adapter is a pure translator: it builds `httpx.Request` objects and parses
`httpx.Response` objects, and owns no HTTP client. The client drives it in both
the sync and the async world, so every adapter works in both for free.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx

from .._config import LimitsConfig
from .._exceptions import (
    APIError,
    APIResponseValidationError,
    APIStatusError,
    InvalidRequestError,
    ResponseTooLargeError,
    StreamInterruptedError,
    status_error_class,
)
from .._headers import retry_after_seconds, safe_headers
from .._registry import ResolvedModel
from .._request import (
    CallOptions,
    ChatRequest,
    EmbeddingsRequest,
    TranscriptionRequest,
)
from .._utils import excerpt, redact
from .._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
    EmbeddingResponse,
    ProviderModel,
    Transcription,
)
from .accumulator import ChunkAccumulator
from .sse import EventTooLarge, ServerSentEvent, SSEDecoder

__all__ = [
    "InProcessTransport",
    "ProviderAdapter",
    "StreamParser",
    "Target",
    "request_id",
    "too_large",
]

USER_AGENT = "palyra"


@dataclass(frozen=True, slots=True)
class Target:
    """The model a call goes to, with the credential to use (never printed)
    and the size caps its answers must keep to."""

    model: ResolvedModel
    credential: str | None
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def __repr__(self) -> str:
        return f"Target(provider={self.model.provider.id!r}, model={self.model.id!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values to scrub from any text shown to people."""
        return (self.credential,) if self.credential else ()

    def fail(self, cls: type[APIError], message: str, **kw: Any) -> APIError:
        """An error of ``cls`` naming this target, with secrets scrubbed."""
        rid = kw.get("request_id")
        if rid and self.credential:
            kw["request_id"] = redact(rid, self.secrets)
        return cls(
            excerpt(message, self.secrets, limit=600),
            provider=self.model.provider.id,
            model=self.model.id,
            **kw,
        )


SizeCap = Literal["max_event_bytes", "max_response_bytes"]


def too_large(
    target: Target, setting: SizeCap, what: str, rid: str | None = None
) -> APIError:
    """The error of an answer that passed one of ``target``'s size caps,
    naming the cap's setting and value."""
    limit: int = getattr(target.limits, setting)
    return target.fail(
        ResponseTooLargeError,
        f"upstream {what} is larger than limits.{setting} ({limit} bytes);"
        " reading stopped there",
        limit=limit,
        setting=setting,
        request_id=rid,
    )


class StreamParser(Protocol):
    """Turns upstream stream bytes into OpenAI-shaped chunks."""

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """Parse one network read; raise a typed error for bad or error events."""

    def flush(self) -> list[ChatCompletionChunk]:
        """At end of body: chunks that only the end of the body completed."""

    def close(self) -> ChatCompletion:
        """End of body: the assembled answer, or `StreamInterruptedError`."""

    def partial(self) -> ChatCompletion:
        """The answer the chunks so far add up to, for a stream that stopped
        early; its ``usage`` is set only once the upstream's full usage
        report has arrived."""

    @property
    def usage(self) -> CompletionUsage | None:
        """The token usage the upstream has reported so far, if any."""


class InProcessTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An upstream that lives in this process: it answers sync and async
    clients alike and never opens a socket, so the drivers need not close it."""


class ProviderAdapter(Protocol):
    """Translate provider-neutral requests to one wire dialect and back."""

    def local_transport(self, target: Target) -> InProcessTransport | None:
        """The in-process upstream serving ``target``, or None for the network."""

    def chat_request(self, target: Target, request: ChatRequest) -> httpx.Request:
        """Build the upstream chat request."""

    def chat_response(self, target: Target, response: httpx.Response) -> ChatCompletion:
        """Parse a 2xx non-streaming chat response."""

    def chat_stream(self, target: Target, request: ChatRequest) -> StreamParser:
        """A parser for the upstream's streaming answer."""

    def embeddings_request(
        self, target: Target, request: EmbeddingsRequest
    ) -> httpx.Request:
        """Build the upstream embeddings request."""

    def embeddings_response(
        self, target: Target, request: EmbeddingsRequest, response: httpx.Response
    ) -> EmbeddingResponse:
        """Parse and validate a 2xx embeddings response."""

    def transcription_request(
        self, target: Target, request: TranscriptionRequest
    ) -> httpx.Request:
        """Build the upstream transcription request."""

    def transcription_response(
        self, target: Target, request: TranscriptionRequest, response: httpx.Response
    ) -> Transcription:
        """Parse a 2xx transcription response."""

    def models_request(self, target: Target, cursor: str | None) -> httpx.Request:
        """Build one page of the provider's model list."""

    def models_response(
        self, target: Target, response: httpx.Response
    ) -> tuple[list[ProviderModel], str | None]:
        """One page of models and the cursor of the next page (None at the end)."""

    def count_tokens_request(
        self, target: Target, request: ChatRequest
    ) -> httpx.Request | None:
        """Build an exact token count, or None when the provider has none."""

    def count_tokens_response(self, target: Target, response: httpx.Response) -> int:
        """The exact prompt token count."""

    def status_error(self, target: Target, response: httpx.Response) -> APIStatusError:
        """The typed error for a non-2xx response (body already read)."""


class SSEChunkParser:
    """What every dialect's stream parser shares: SSE decoding, the accumulator,
    and treating an event cut off by the end of the body as an interruption.

    Subclasses implement `_events` (decoded events to chunks) and `close`.
    """

    __slots__ = ("_forward_usage", "_sse", "_target", "accumulator")
    _cut_message = "upstream stream ended in the middle of an event"

    def __init__(self, target: Target, *, forward_usage: bool) -> None:
        self._target = target
        self._forward_usage = forward_usage
        self._sse = SSEDecoder(target.limits.max_event_bytes)
        self.accumulator = ChunkAccumulator()

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """Parse one network read into chunks; error events raise typed errors,
        and so does an event past ``limits.max_event_bytes``."""
        try:
            events = self._sse.feed(data)
        except EventTooLarge:
            raise too_large(self._target, "max_event_bytes", "stream event") from None
        return self._events(events)

    @property
    def usage(self) -> CompletionUsage | None:
        """The token usage the upstream has reported so far, if any."""
        return self.accumulator.usage

    def partial(self) -> ChatCompletion:
        """The answer so far (usage once the upstream's usage chunk came)."""
        return self.accumulator.completion()

    def flush(self) -> list[ChatCompletionChunk]:
        """Chunks completed only by the end of the body."""
        try:
            events = self._sse.flush()
        except EventTooLarge:
            raise too_large(self._target, "max_event_bytes", "stream event") from None
        try:
            return self._events(events)
        except APIResponseValidationError:
            pass  # a cut final event; raised below, without the upstream text
        raise self._target.fail(
            StreamInterruptedError, f"{self._cut_message}; the answer is partial"
        )

    def _events(self, events: list[ServerSentEvent]) -> list[ChatCompletionChunk]:
        raise NotImplementedError


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON for a request body.

    Raises:
        InvalidRequestError: when the payload holds something JSON cannot encode.
    """
    try:
        return json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        # allow_nan=False: NaN and Infinity are not JSON, and upstreams refuse them.
        raise InvalidRequestError(f"request is not JSON-serialisable: {exc}") from None


def timeout_for(target: Target, call: CallOptions) -> dict[str, float]:
    """httpx timeout extension for one attempt: config, or the per-call value."""
    provider = target.model.provider
    total = call.timeout if call.timeout is not None else provider.timeout
    connect = min(provider.connect_timeout, total)
    return {"connect": connect, "read": total, "write": total, "pool": total}


def auth_headers(target: Target) -> dict[str, str]:
    """The credential header in the provider's configured style."""
    style = target.model.provider.effective_auth_header
    if target.credential is None or style == "none":
        return {}
    if style == "x-api-key":
        return {"x-api-key": target.credential}
    return {"authorization": f"Bearer {target.credential}"}


def models_page(
    target: Target, response: httpx.Response, items: Any
) -> list[ProviderModel]:
    """`ProviderModel`s from the ``data`` items of a model list."""
    if not isinstance(items, list):
        raise target.fail(
            APIResponseValidationError,
            "upstream model list has no 'data' list",
            request_id=request_id(response),
        )
    return [
        ProviderModel(
            id=str(item["id"]),
            provider=target.model.provider.id,
            display_name=item.get("display_name"),
            created=_created(item),
            owned_by=item.get("owned_by"),
        )
        for item in items
        if isinstance(item, dict) and "id" in item
    ]


def _created(item: dict[str, Any]) -> int | None:
    """Unix seconds: OpenAI's ``created``, or Anthropic's ISO ``created_at``."""
    created = item.get("created")
    if isinstance(created, int):
        return created
    try:
        return int(datetime.fromisoformat(str(item["created_at"])).timestamp())
    except (KeyError, ValueError):
        return None


def request_id(response: httpx.Response, secrets: tuple[str, ...] = ()) -> str | None:
    """The upstream's request id header, if it sent one, redacted and scrubbed
    of ``secrets`` (the call's credential: an upstream may echo it there)."""
    headers = response.headers
    value: str | None = headers.get("x-request-id") or headers.get("request-id")
    if not value:
        return None
    value = value[:128]
    # The usual id ("req_...", a UUID) cannot hold what redaction looks for:
    # one check instead of every redaction pattern on every call.
    if _PLAIN_ID.fullmatch(value) and not any(s and s in value for s in secrets):
        return value
    return redact(value, secrets)


_PLAIN_ID = re.compile(r"(?!.*sk-)[A-Za-z0-9_.+/-]+")


def parse_json(target: Target, response: httpx.Response, what: str) -> Any:
    """Decode a 2xx JSON body or raise `APIResponseValidationError`."""
    try:
        return json.loads(response.content)
    except ValueError:
        pass
    # Raised outside the except block: the decode error holds the whole body
    # (echoed credentials included) and must not ride along as __context__.
    kind = response.headers.get("content-type", "no content type")
    raise target.fail(
        APIResponseValidationError,
        f"upstream {what} response is not JSON ({kind},"
        f" {len(response.content)} bytes): {response.text}",
        request_id=request_id(response),
    )


# Error types of both dialects (OpenAI's and Anthropic's) and their statuses.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def stream_error_status(error: Any) -> int:
    """A mid-stream error has no HTTP status of its own: infer one from its
    numeric code or its type (500 when neither says)."""
    if isinstance(error, dict):
        for key in ("code", "type"):
            value = error.get(key)
            if isinstance(value, int) and 400 <= value < 600:
                return value
            if isinstance(value, str) and value in _ERROR_TYPE_STATUS:
                return _ERROR_TYPE_STATUS[value]
    return 500


def error_from_payload(
    target: Target, status: int, payload: Any, rid: str | None
) -> APIStatusError:
    """The typed error for an OpenAI-style ``{"error": {...}}`` envelope."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        message = str(error.get("message") or json.dumps(error))
        code, kind = error.get("code"), error.get("type")
    else:
        message, code, kind = str(error), None, None
    return target.fail(  # type: ignore[return-value]
        status_error_class(status),
        message,
        status_code=status,
        request_id=rid,
        body=_redacted_body(target, payload),
        code=redact(str(code), target.secrets) if code is not None else None,
        type=redact(str(kind), target.secrets) if kind is not None else None,
    )


def status_error_from_response(
    target: Target, response: httpx.Response
) -> APIStatusError:
    """The typed error for a non-2xx response, JSON envelope or not, with the
    wait the upstream asked for and its (safe) headers."""
    rid = request_id(response)
    try:
        payload = json.loads(response.content)
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        error: APIStatusError = target.fail(  # type: ignore[assignment]
            status_error_class(response.status_code),
            f"upstream returned a non-JSON error body ({kind}): {response.text}",
            status_code=response.status_code,
            request_id=rid,
        )
    else:
        error = error_from_payload(target, response.status_code, payload, rid)
    error.retry_after = retry_after_seconds(response.headers, now=time.time())
    error.headers = safe_headers(response.headers, target.secrets)
    return error


def _redacted_body(target: Target, payload: Any) -> Any:
    """The error body with every string redacted (keys too), or None when it
    is too big to keep."""
    if len(json.dumps(payload)) > 8192:
        return None
    return _scrubbed(payload, target.secrets)


def _scrubbed(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {_scrubbed(k, secrets): _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, secrets) for item in value]
    return value
