"""The deterministic provider: an OpenAI-compatible upstream that lives in-process.

Requests never leave the process: they go through `DeterministicTransport`,
which answers in the OpenAI wire format (JSON and SSE). The same adapter,
parsers and pipeline serve it as any HTTP upstream, so what works offline here
works against a real provider. Replies echo the last user message unless the
`DeterministicBackend` has scripted ones queued (the script and the answer
decision live in ``scripted``; this module renders them as OpenAI does).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx

from .._exceptions import UnsupportedCapabilityError
from .._registry import ResolvedModel
from .._tokens import TokenCounter
from .base import InProcessTransport, Target
from .openai import OpenAIAdapter
from .scripted import Prompt, ScriptedBackend, ScriptedReply, ToolCall, Turn, pieces

__all__ = [
    "DeterministicAdapter",
    "DeterministicBackend",
    "DeterministicTransport",
    "ScriptedReply",
    "create",
]

BASE_URL = "http://deterministic.palyra.invalid/v1"
_PROVIDER_HEADER = "x-palyra-deterministic"
# Listed by ``GET /models``: a fixed date, so the answer never changes.
_MODEL_CREATED = 1_700_000_000


class DeterministicBackend(ScriptedBackend):
    """Scriptable state of one deterministic provider, answering as OpenAI does.

    Replies are FIFO: each call takes the next queued `ScriptedReply`, or echoes
    the last user message when the queue is empty. Every request body received
    is kept in `history`. ``GET /models`` lists ``models`` (none unless given).
    """

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request in the OpenAI wire format."""
        path = request.url.path
        if request.method == "GET" and path.endswith("/models"):
            return self._models()
        if path.endswith("/audio/transcriptions"):
            return self._transcription(request)
        chat, embeddings = (
            path.endswith(p) for p in ("/chat/completions", "/embeddings")
        )
        if not (chat or embeddings):
            return _error(404, f"unknown path {path}")
        try:
            payload = json.loads(request.content)
        except ValueError:
            return _error(400, "request body is not JSON")
        reply, number = self._next(payload, errors_only=embeddings)
        if reply is not None and reply.status != 200:
            return _error(reply.status, reply.error_message)
        if chat:
            problem = _chat_problem(payload)
            if problem:
                return _error(400, problem)
            return self._chat(payload, reply, number)
        return self._embeddings(payload)

    def _chat(
        self, payload: dict[str, Any], reply: ScriptedReply | None, number: int
    ) -> httpx.Response:
        turn = self._turn(reply, number, _prompt(payload), "call_det")
        usage = {
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.completion_tokens,
            "total_tokens": turn.prompt_tokens + turn.completion_tokens,
        }
        tool_calls = [_tool_call(call) for call in turn.tool_calls]
        finish = turn.finish_reason or ("tool_calls" if tool_calls else "stop")
        base = {"id": f"chatcmpl-det-{number}", "created": 0, "model": turn.model}
        if payload.get("stream"):
            usage_wanted = bool(
                (payload.get("stream_options") or {}).get("include_usage")
            )
            body = _sse_body(
                base, turn, tool_calls, finish, usage if usage_wanted else None
            )
            headers = {"content-type": "text/event-stream", "x-request-id": "det"}
            return httpx.Response(200, headers=headers, content=body)
        message = {
            "role": "assistant",
            "content": turn.content,
            "refusal": turn.refusal,
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

    def _models(self) -> httpx.Response:
        data = [
            {
                "id": m,
                "object": "model",
                "created": _MODEL_CREATED,
                "owned_by": "system",
            }
            for m in self.models
        ]
        return _json({"object": "list", "data": data})

    def _embeddings(self, payload: dict[str, Any]) -> httpx.Response:
        inputs = payload.get("input")
        items = [inputs] if isinstance(inputs, str) else inputs
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(x, str) and x.strip() for x in items)
        ):
            return _error(400, "input must be non-empty strings")
        dims = payload.get("dimensions") or 64
        if isinstance(dims, bool) or not isinstance(dims, int) or not 0 < dims <= 65536:
            return _error(400, "dimensions must be an integer from 1 to 65536")
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
            return _error(reply.status, reply.error_message)
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
        """Tag the request with the provider whose backend must answer it.

        Raises:
            UnsupportedCapabilityError: for ``n > 1``: the backend answers one
                choice, and a reply with fewer choices than asked would lie.
        """
        if request.body.get("n") not in (None, 1):
            raise UnsupportedCapabilityError(
                "deterministic models answer one choice: n must be 1",
                capability="n > 1",
                provider=target.model.provider.id,
                model=target.model.id,
            )
        return _tag(target.model, super().chat_request(target, request))

    def embeddings_request(self, target: Target, request: Any) -> httpx.Request:
        """Tag the request with the provider whose backend must answer it."""
        return _tag(target.model, super().embeddings_request(target, request))

    def transcription_request(self, target: Target, request: Any) -> httpx.Request:
        """Tag the request with the provider whose backend must answer it."""
        return _tag(target.model, super().transcription_request(target, request))

    def models_request(self, target: Target, cursor: str | None) -> httpx.Request:
        """Tag the request with the provider whose backend must answer it."""
        return _tag(target.model, super().models_request(target, cursor))


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


def _chat_problem(payload: Any) -> str | None:
    """What the mock cannot read in a chat body (extra_body can send anything)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return "messages must be a list"
    tools = payload.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(t, dict) for t in tools)
    ):
        return "tools must be a list of objects"
    stop = payload.get("stop")
    if stop is not None and not isinstance(stop, str | list):
        return "stop must be a string or a list of strings"
    return None


def _prompt(payload: dict[str, Any]) -> Prompt:
    fmt = payload.get("response_format")
    stop = payload.get("stop") or ()
    return Prompt(
        model=str(payload.get("model", "deterministic")),
        messages=payload.get("messages") or [],
        tools=payload.get("tools"),
        json_mode=isinstance(fmt, dict)
        and fmt.get("type") in ("json_object", "json_schema"),
        stop=(stop,) if isinstance(stop, str) else tuple(map(str, stop)),
    )


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _sse_body(
    base: dict[str, Any],
    turn: Turn,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, int] | None,
) -> bytes:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        body = {**base, "object": "chat.completion.chunk", "choices": [choice]}
        return json.dumps(body)

    events = [chunk({"role": "assistant", "content": ""})]
    for field_name, text in (("content", turn.content), ("refusal", turn.refusal)):
        events.extend(chunk({field_name: piece}) for piece in pieces(text or ""))
    for index, call in enumerate(tool_calls):
        head = {"index": index, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        events.append(chunk({"tool_calls": [head]}))
        for piece in pieces(call["function"]["arguments"], size=16):
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


def _multipart(request: httpx.Request) -> tuple[dict[str, str], str, int]:
    head = f"content-type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    fields: dict[str, str] = {}
    filename, size = "audio", 0
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "file" or part.get_filename():
            filename, size = str(part.get_filename() or filename), len(data)
        elif isinstance(name, str):
            fields[name] = data.decode(errors="replace")
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
