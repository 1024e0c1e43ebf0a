"""The deterministic provider: an OpenAI-compatible upstream that lives in-process.

Requests never leave the process: they go through `DeterministicTransport`,
which answers in the OpenAI wire format (JSON and SSE). The same adapter,
parsers and pipeline serve it as any HTTP upstream, so what works offline here
works against a real provider. Replies echo the last user message unless the
`DeterministicBackend` has scripted ones queued.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx

from .._registry import ResolvedModel
from .._tokens import TokenCounter
from .base import InProcessTransport, Target
from .openai import OpenAIAdapter

__all__ = [
    "DeterministicAdapter",
    "DeterministicBackend",
    "DeterministicTransport",
    "ScriptedReply",
    "create",
]

BASE_URL = "http://deterministic.palyra.invalid/v1"
_PROVIDER_HEADER = "x-palyra-deterministic"
_STREAM_PIECE_WORDS = 4
_WORDS = re.compile(r"\s*\S+\s*?(?=\s|$)|\s+")


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One canned answer queued on a `DeterministicBackend`."""

    content: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    finish_reason: str | None = None
    refusal: str | None = None
    status: int = 200
    error: str | None = None


class DeterministicBackend:
    """Scriptable state of one deterministic provider.

    Replies are FIFO: each call takes the next queued `ScriptedReply`, or echoes
    the last user message when the queue is empty. Every request body received
    is kept in `history`.
    """

    def __init__(self, counter: Callable[[], TokenCounter]) -> None:
        self._counter = counter
        self._queue: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._requests = 0
        self.history: list[dict[str, Any]] = []

    def enqueue(
        self,
        content: str | None = None,
        *,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        finish_reason: str | None = None,
        refusal: str | None = None,
        status: int = 200,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue the next reply (``times`` copies of it).

        Args:
            content: Text of the answer (or the transcript, for transcriptions).
            tool_calls: ``{"name": ..., "arguments": dict | str}`` items; the
                finish reason becomes ``tool_calls``.
            finish_reason: Override the finish reason.
            refusal: A refusal instead of content.
            status: Answer with this HTTP status instead (e.g. 429, 500).
            error: The error message for a non-200 status.
            times: Queue this many copies: a retried error must be scripted once
                per attempt (``max_retries + 1``) to reach the caller.

        Raises:
            ValueError: for a status that is neither 200 nor 4xx/5xx, an error
                message with status 200, or a tool call without a name.
        """
        if status != 200 and not 400 <= status <= 599:
            raise ValueError(f"status must be 200 or 400-599, not {status}")
        if error is not None and status == 200:
            raise ValueError("error needs a non-200 status")
        calls = tuple(_scripted_call(call) for call in tool_calls)
        reply = ScriptedReply(content, calls, finish_reason, refusal, status, error)
        with self._lock:
            self._queue.extend([reply] * times)

    def _next(
        self, payload: dict[str, Any], *, errors_only: bool = False
    ) -> tuple[ScriptedReply | None, int]:
        # Embeddings have no scripted content: they only take a queued error, so
        # a reply scripted for a chat call is not eaten by an embed in between.
        with self._lock:
            self.history.append(payload)
            self._requests += 1
            reply = None
            if self._queue and not (errors_only and self._queue[0].status == 200):
                reply = self._queue.popleft()
            return reply, self._requests

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request in the OpenAI wire format."""
        path = request.url.path.removeprefix("/v1")
        if path == "/audio/transcriptions":
            return self._transcription(request)
        try:
            payload = json.loads(request.content)
        except ValueError:
            return _error(400, "request body is not JSON")
        reply, number = self._next(payload, errors_only=path == "/embeddings")
        if reply is not None and reply.status != 200:
            return _error(
                reply.status, reply.error or f"scripted status {reply.status}"
            )
        if path == "/chat/completions":
            return self._chat(payload, reply, number)
        if path == "/embeddings":
            return self._embeddings(payload)
        return _error(404, f"unknown path {path}")

    def _chat(
        self, payload: dict[str, Any], reply: ScriptedReply | None, number: int
    ) -> httpx.Response:
        messages = payload.get("messages") or []
        reply = reply or ScriptedReply(content=_echo(payload, messages))
        counter = self._counter()
        model = str(payload.get("model", "deterministic"))
        prompt = counter.estimate_chat(model, messages, payload.get("tools"))
        text = (reply.content or "") + (reply.refusal or "")
        completion = sum(counter.count_texts(model, [text])[0]) if text else 0
        completion = max(completion, 1)
        usage = {
            "prompt_tokens": prompt.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt.prompt_tokens + completion,
        }
        tool_calls = [_tool_call(number, i, c) for i, c in enumerate(reply.tool_calls)]
        finish = reply.finish_reason or ("tool_calls" if tool_calls else "stop")
        base = {"id": f"chatcmpl-det-{number}", "created": 0, "model": model}
        if payload.get("stream"):
            usage_wanted = bool(
                (payload.get("stream_options") or {}).get("include_usage")
            )
            body = _sse_body(
                base, reply, tool_calls, finish, usage if usage_wanted else None
            )
            headers = {"content-type": "text/event-stream", "x-request-id": "det"}
            return httpx.Response(200, headers=headers, content=body)
        message = {
            "role": "assistant",
            "content": reply.content,
            "refusal": reply.refusal,
            "tool_calls": tool_calls or None,
        }
        return _json(
            {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def _embeddings(self, payload: dict[str, Any]) -> httpx.Response:
        inputs = payload.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not items or not all(isinstance(x, str) and x.strip() for x in items):
            return _error(400, "input must be non-empty strings")
        dims = int(payload.get("dimensions") or 64)
        counter = self._counter()
        model = str(payload.get("model", "deterministic"))
        tokens = sum(counter.count_texts(model, items)[0])
        data = [
            {"object": "embedding", "index": i, "embedding": hash_embedding(text, dims)}
            for i, text in enumerate(items)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"object": "list", "data": data, "model": model, "usage": usage})

    def _transcription(self, request: httpx.Request) -> httpx.Response:
        fields, filename, size = _multipart(request)
        reply, _ = self._next({"model": fields.get("model"), **fields})
        if reply is not None and reply.status != 200:
            return _error(
                reply.status, reply.error or f"scripted status {reply.status}"
            )
        text = (reply.content if reply else None) or f"[{size} bytes of {filename}]"
        fmt = fields.get("response_format", "json")
        if fmt == "text":
            return httpx.Response(200, text=text + "\n")
        if fmt == "verbose_json":
            segment = {"id": 0, "start": 0.0, "end": 1.0, "text": text}
            language = fields.get("language", "english")
            return _json(
                {
                    "text": text,
                    "language": language,
                    "duration": 1.0,
                    "segments": [segment],
                }
            )
        return _json({"text": text})


class DeterministicTransport(InProcessTransport):
    """An httpx transport answering from a `DeterministicBackend`, sync or async.

    Args:
        backend: Returns the backend of a provider id (the request names its
            provider in a header the adapter sets).
    """

    def __init__(self, backend: Callable[[str], DeterministicBackend]) -> None:
        self._backend = backend

    def _answer(self, request: httpx.Request) -> httpx.Response:
        return self._backend(request.headers[_PROVIDER_HEADER]).handle(request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer synchronously."""
        request.read()
        return self._answer(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer in the event loop (no I/O happens, so no thread is needed)."""
        await request.aread()
        return self._answer(request)


def create(counter: Callable[[], TokenCounter]) -> DeterministicAdapter:
    """The adapter of ``deterministic`` providers, with their backends."""
    return DeterministicAdapter(counter)


class DeterministicAdapter(OpenAIAdapter):
    """The OpenAI dialect, addressed to the in-process deterministic upstream.

    It owns one scriptable `DeterministicBackend` per provider id, and the
    transport that answers from them.
    """

    def __init__(self, counter: Callable[[], TokenCounter]) -> None:
        super().__init__()
        self._counter = counter
        self._backends: dict[str, DeterministicBackend] = {}
        self._lock = threading.Lock()
        self._transport = DeterministicTransport(self.backend)

    def backend(self, provider_id: str) -> DeterministicBackend:
        """The scriptable backend of one deterministic provider (made on first use)."""
        backend = self._backends.get(provider_id)
        if backend is None:
            with self._lock:
                backend = self._backends.setdefault(
                    provider_id, DeterministicBackend(self._counter)
                )
        return backend

    def base_url(self, target: Target) -> str:
        """The in-process upstream's (never resolved) URL."""
        return BASE_URL

    def local_transport(self, target: Target) -> InProcessTransport:
        """The in-process upstream: no socket is ever opened."""
        return self._transport

    def chat_request(self, target: Target, request: Any) -> httpx.Request:
        """Tag the request with the provider whose backend must answer it."""
        return _tag(target.model, super().chat_request(target, request))

    def embeddings_request(self, target: Target, request: Any) -> httpx.Request:
        """Tag the request with the provider whose backend must answer it."""
        return _tag(target.model, super().embeddings_request(target, request))

    def transcription_request(self, target: Target, request: Any) -> httpx.Request:
        """Tag the request with the provider whose backend must answer it."""
        return _tag(target.model, super().transcription_request(target, request))


def _tag(model: ResolvedModel, request: httpx.Request) -> httpx.Request:
    request.headers[_PROVIDER_HEADER] = model.provider.id
    return request


def hash_embedding(text: str, dimensions: int) -> list[float]:
    """A stable bag-of-words embedding: same text, same unit vector, any process."""
    vector = [0.0] * dimensions
    for position, word in enumerate(text.lower().split()):
        digest = hashlib.blake2b(f"{position}:{word}".encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "big")
        sign = 1.0 if value & 2 else -1.0
        vector[value % dimensions] += sign * (1.0 + (value & 0xFF) % 64 / 64.0)
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _echo(payload: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> str:
    text = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = _text_of(message.get("content"))
            break
    text = text.strip() or "ack"
    fmt = payload.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        return json.dumps({"echo": text})
    return text


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if p.get("type") == "text"
        )
    return ""


def _scripted_call(call: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept ``{"name", "arguments"}`` or the OpenAI ``{"function": {...}}`` shape."""
    function = call.get("function")
    if isinstance(function, Mapping):
        call = {"id": call.get("id"), **function}
    if not isinstance(call.get("name"), str) or not call["name"]:
        raise ValueError(f"a scripted tool call needs a 'name': {dict(call)!r}")
    return call


def _tool_call(number: int, index: int, call: Mapping[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {
        "id": str(call.get("id") or f"call_det_{number}_{index}"),
        "type": "function",
        "function": {"name": str(call["name"]), "arguments": arguments},
    }


def _sse_body(
    base: dict[str, Any],
    reply: ScriptedReply,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, int] | None,
) -> bytes:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        body = {**base, "object": "chat.completion.chunk", "choices": [choice]}
        return json.dumps(body)

    events = [chunk({"role": "assistant", "content": ""})]
    for field_name, text in (("content", reply.content), ("refusal", reply.refusal)):
        events.extend(chunk({field_name: piece}) for piece in _pieces(text or ""))
    for index, call in enumerate(tool_calls):
        head = {"index": index, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        events.append(chunk({"tool_calls": [head]}))
        for piece in _pieces(call["function"]["arguments"], size=16):
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            events.append(chunk(delta))
    events.append(chunk({}, finish))
    if usage is not None:
        events.append(
            json.dumps(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    events.append("[DONE]")
    return "".join(f"data: {event}\n\n" for event in events).encode()


def _pieces(text: str, size: int = 0) -> list[str]:
    """Split text into streamable pieces whose concatenation is exactly the text."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    words = _WORDS.findall(text)
    step = _STREAM_PIECE_WORDS
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]


def _multipart(request: httpx.Request) -> tuple[dict[str, str], str, int]:
    head = f"content-type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    fields: dict[str, str] = {}
    filename, size = "audio", 0
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename():
            filename, size = str(part.get_filename()), len(data)
        elif isinstance(name, str):
            fields[name] = data.decode()
    return fields, filename, size


def _json(payload: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=payload, headers={"x-request-id": "det"})


_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def _error(status: int, message: str) -> httpx.Response:
    default = "invalid_request_error" if status < 500 else "server_error"
    kind = _ERROR_TYPES.get(status, default)
    error = {"message": message, "type": kind, "param": None, "code": None}
    return _json({"error": error}, status)
