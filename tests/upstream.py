"""A real OpenAI- and Anthropic-compatible HTTP server on 127.0.0.1 for e2e tests.

The server is built on the standard library only (``http.server``) and runs in a
daemon thread.  It answers the OpenAI and the Anthropic Messages wire formats
with deterministic, echo-style defaults, and can be scripted with :class:`Reply`
objects to produce errors, recorded SSE streams, slow or truncated responses,
hangs and connection resets::

    with Upstream(api_key="sk-test") as upstream:
        upstream.enqueue(error_reply(429, "Rate limit reached", code="rate_limit"))
        ...  # point the client at upstream.base_url
        assert upstream.requests[0].json()["model"] == "gpt-4o-mini"

Scripted replies are consumed first-in first-out by the next requests, whatever
their path; when the queue is empty the default behaviour answers:

* ``POST /v1/chat/completions`` echoes the text of the last user message, as a
  ``chat.completion`` object or, with ``"stream": true``, as SSE chunks (one per
  word, optional usage chunk, ``[DONE]``);
* ``POST /v1/embeddings`` returns vectors derived from a sha256 of the text;
* ``POST /v1/audio/transcriptions`` parses the multipart upload and answers
  ``"transcribed <N> bytes of <filename>"`` (json, verbose_json or text);
* ``GET /v1/models`` lists one model;
* ``POST /v1/messages`` (Anthropic) echoes the text of the last user message as
  a ``message`` object or, with ``"stream": true``, as named SSE events
  (``message_start`` ... ``message_stop``, one ``text_delta`` per word);
* ``POST /v1/messages/count_tokens`` (Anthropic) counts the words of the
  messages and system prompt;
* ``GET /v1/models`` *with an* ``anthropic-version`` *header* pages through
  :data:`ANTHROPIC_MODELS` (``limit``, ``after_id``);
* anything else is a 404 with the OpenAI error envelope (the Anthropic one for
  ``/v1/messages/...`` or when the request carries ``anthropic-version``).

The Anthropic client's base URL is :attr:`Upstream.origin` (it appends
``/v1/messages``); the OpenAI one is :attr:`Upstream.base_url` (``.../v1``).
Answers to Anthropic requests carry ``request-id`` instead of ``x-request-id``.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email.message
import email.parser
import hashlib
import http
import json as _json
import math
import os
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "ANTHROPIC_MODELS",
    "RecordedRequest",
    "Reply",
    "Upstream",
    "anthropic_error_reply",
    "anthropic_sse",
    "error_reply",
    "fixtures_dir",
    "html_reply",
    "load_recorded",
]

KeyCheck = Callable[[str], bool]
"""Says whether a presented API key or bearer token is valid."""
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_DIMENSIONS = 8
ANTHROPIC_MODELS: tuple[tuple[str, str], ...] = (
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-opus-4-1", "Claude Opus 4.1"),
)
"""``(id, display_name)`` of the models the Anthropic ``GET /v1/models`` lists."""
ANTHROPIC_MODELS_CREATED_AT = "2025-02-19T00:00:00Z"
ANTHROPIC_TOOL_RESULTS_TEXT = "tool results received"
"""The echo when the last user message holds only ``tool_result`` blocks."""
_ANTHROPIC_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")

_SSE_EVENT_SPLIT = re.compile(rb"(?<=\r\n\r\n)|(?<=\n\n)|(?<=\r\r)")
_WORD_PIECES = re.compile(r"\s*\S+\s*")
_QUIET_ERRORS = (ConnectionError, TimeoutError)


# --------------------------------------------------------------------------- data


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    """The request target as sent, including any query string."""
    headers: dict[str, str]
    """Header names lower-cased; repeated headers are joined with ``", "``."""
    body: bytes
    connection: int = 0
    """1-based number of the TCP connection the request arrived on."""

    def json(self) -> Any:
        """Decode the body as JSON."""
        return _json.loads(self.body)


@dataclass
class Reply:
    """A scripted response.

    Body precedence: ``sse_raw`` > ``sse`` > ``body`` > ``json``.  Timing and
    failure knobs are applied in the order ``reset``, ``hang``, ``delay``.
    """

    status: int = 200
    json: Any = None
    """JSON body (``None`` means no body unless another body field is set)."""
    body: bytes | None = None
    """Raw body; overrides ``json``."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers; they override the defaults (case-insensitively)."""
    content_type: str | None = None
    sse: list[str] | None = None
    """SSE event payloads, each written as ``data: {payload}\\n\\n``.

    Include ``"[DONE]"`` explicitly if wanted.  Sent with chunked framing, one
    HTTP chunk per event.
    """
    sse_raw: bytes | None = None
    """Bytes written verbatim as an SSE body (e.g. a recorded ``.sse`` file).

    For ``chunk_delay`` and ``cut_after`` the bytes are split into events at
    blank lines.
    """
    delay: float = 0.0
    """Seconds to wait before sending the status line."""
    chunk_delay: float = 0.0
    """Seconds to wait between SSE events."""
    cut_after: int | None = None
    """Close the connection abruptly after this many SSE events.

    No terminating zero-length chunk is sent, so the client sees a truncated
    body.  For a non-SSE body it is a byte count: the full ``Content-Length`` is
    announced but only this many body bytes are sent.
    """
    hang: float = 0.0
    """Read the request, then send nothing for this many seconds and close the
    connection without any response (given up early when the server stops)."""
    reset: bool = False
    """Close the socket right after reading the request, with ``SO_LINGER`` 0 so
    the client gets a TCP RST."""


def error_reply(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> Reply:
    """A reply carrying the OpenAI error envelope."""
    return Reply(
        status=status,
        json=_error_body(message, type=type, code=code, param=param),
        headers=dict(headers or {}),
    )


def anthropic_error_reply(
    status: int,
    error_type: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Reply:
    """A reply carrying the Anthropic error envelope.

    ``{"type": "error", "error": {"type": error_type, "message": message}}``,
    e.g. ``anthropic_error_reply(529, "overloaded_error", "Overloaded")``.
    """
    return Reply(
        status=status,
        json=_anthropic_error_body(error_type, message),
        headers=dict(headers or {}),
    )


def anthropic_sse(
    events: list[tuple[str, dict[str, Any]]],
    *,
    headers: dict[str, str] | None = None,
    chunk_delay: float = 0.0,
    cut_after: int | None = None,
) -> Reply:
    """Named SSE events, each written as ``event: <name>\\ndata: <json>\\n\\n``.

    The data gets ``"type": <name>`` first unless it has its own ``type``.
    Served as ``sse_raw``, so ``chunk_delay`` and ``cut_after`` count events.
    """
    return Reply(
        sse_raw=b"".join(_named_event(name, data) for name, data in events),
        headers=dict(headers or {}),
        chunk_delay=chunk_delay,
        cut_after=cut_after,
    )


def html_reply(status: int = 502) -> Reply:
    """An nginx-style HTML error page, as a misbehaving proxy would send."""
    title = f"{status} {_phrase(status)}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Reply(
        status=status,
        body=page.encode(),
        content_type="text/html",
        headers={"server": "nginx"},
    )


def fixtures_dir() -> Path:
    """Directory of the recorded provider streams.

    ``$PALYRA_FIXTURES_DIR`` if set, else the copy kept in ``tests/fixtures``
    (taken from the project's shared recordings, so a clone is self-contained).
    """
    override = os.environ.get("PALYRA_FIXTURES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "fixtures" / "recorded"


def load_recorded(name: str) -> bytes:
    """Bytes of a recorded fixture, e.g. ``"openai/chat_stream_text_a.sse"``."""
    return (fixtures_dir() / name).read_bytes()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _anthropic_error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _named_event(name: str, data: dict[str, Any]) -> bytes:
    payload = _json.dumps({"type": name, **data}, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


# ------------------------------------------------------------------------ server


class Upstream:
    """An OpenAI- and Anthropic-compatible HTTP server on 127.0.0.1 for tests."""

    def __init__(self, *, api_key: str | KeyCheck | None = None) -> None:
        """Configure the server; nothing is bound until :meth:`start`.

        With ``api_key`` set, OpenAI requests without ``Authorization: Bearer
        <api_key>`` get a 401; Anthropic requests (``/v1/messages...``, or any
        request with an ``anthropic-version`` header) need ``x-api-key:
        <api_key>`` or that bearer header (else a 401 ``authentication_error``)
        and an ``anthropic-version`` header (else a 400).  Scripted replies are
        not consumed by rejected requests.

        ``api_key`` may also be a function that says whether the token
        presented (the bearer token, or the ``x-api-key`` value) is valid, such
        as ``AuthServer.valid`` of ``tests/auth/authserver.py``: tokens that
        expire, rotate or are revoked are then refused as they would be.
        """
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        """Every request received, in order."""
        self.connections = 0
        """Number of TCP connections accepted so far."""
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised in handlers (connection errors excluded)."""
        self._lock = threading.Lock()
        self._queue: collections.deque[Reply] = collections.deque()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._active: set[socket.socket] = set()
        self._port = 0

    # -- lifecycle

    def start(self) -> Upstream:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("Upstream already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler, self)
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"upstream-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, abort open connections and close the listening socket.

        Returns promptly even while handlers hang or stream: every wait inside a
        handler is interrupted, idle keep-alive connections are shut down, and
        the handler threads are joined.  Idempotent.
        """
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            for sock in list(self._active):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Upstream:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # -- addresses

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if not self._port:
            raise RuntimeError("Upstream not started")
        return self._port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``, the Anthropic-style base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, the OpenAI-style base URL."""
        return f"{self.origin}/v1"

    # -- scripting

    def enqueue(self, *replies: Reply) -> None:
        """Script replies for the next requests (any path), first-in first-out."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Number of scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- used by the handler

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests)

    def _open(self, sock: socket.socket) -> int:
        with self._lock:
            self.connections += 1
            self._active.add(sock)
            if self._stopping.is_set():
                # Accepted just before stop() shut the others down: do it here.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return self.connections

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.discard(sock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 50 concurrent callers must not be reset
    block_on_close = True  # server_close() joins the handler threads

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        upstream: Upstream,
    ) -> None:
        self.upstream = upstream
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), a reverse DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, _QUIET_ERRORS):
            return
        if self.upstream._stopping.is_set() and isinstance(exc, OSError):
            return
        self.upstream.errors.append(exc)
        traceback.print_exc(file=sys.stderr)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "palyra-upstream"
    server: _Server

    _reset = False
    _conn_no = 0

    # -- connection lifecycle

    def setup(self) -> None:
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn_no = self.server.upstream._open(self.connection)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.upstream._close(self.connection)
            if self._reset:
                # The makefile() objects are closed now, so this really closes
                # the descriptor, and SO_LINGER 0 turns it into an RST.
                self.connection.close()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""

    # -- dispatch

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        upstream = self.server.upstream
        body = self._read_body()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            connection=self._conn_no,
        )
        number = upstream._record(request)
        anthropic = _is_anthropic(request)
        reply = _check_auth(upstream.api_key, request, anthropic)
        if reply is None:
            reply = upstream._next_reply()
        if reply is None:
            reply = _default_reply(request, number)
        self._send(reply, number, anthropic=anthropic)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- responding

    def _wait(self, seconds: float) -> bool:
        """Sleep, interruptibly; False if the server is stopping."""
        if seconds > 0:
            self.server.upstream._stopping.wait(seconds)
        return not self.server.upstream._stopping.is_set()

    def _drop(self) -> None:
        self.close_connection = True

    def _send(self, reply: Reply, number: int, *, anthropic: bool = False) -> None:
        if reply.reset:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self._reset = True
            self._drop()
            return
        if reply.hang > 0:
            self._wait(reply.hang)
            self._drop()
            return
        if not self._wait(reply.delay):
            self._drop()
            return

        streamed = reply.sse_raw is not None or reply.sse is not None
        events: list[bytes] = []
        payload = b""
        content_type = reply.content_type
        if reply.sse_raw is not None:
            events = [e for e in _SSE_EVENT_SPLIT.split(reply.sse_raw) if e]
            content_type = content_type or "text/event-stream; charset=utf-8"
        elif reply.sse is not None:
            events = [f"data: {item}\n\n".encode() for item in reply.sse]
            content_type = content_type or "text/event-stream; charset=utf-8"
        elif reply.body is not None:
            payload = reply.body
            content_type = content_type or "application/octet-stream"
        elif reply.json is not None:
            payload = _json.dumps(reply.json).encode()
            content_type = content_type or "application/json"

        merged: dict[str, tuple[str, str]] = {}

        def put(name: str, value: str) -> None:
            merged[name.lower()] = (name, value)

        put("Server", self.version_string())
        put("Date", self.date_time_string())
        put("request-id" if anthropic else "x-request-id", f"req_{number}")
        if content_type:
            put("Content-Type", content_type)
        if streamed:
            put("Transfer-Encoding", "chunked")
            put("Cache-Control", "no-cache")
        elif reply.status >= 200 and reply.status not in (204, 304):
            put("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            put(name, value)
        if self.close_connection:
            put("Connection", "close")
        elif merged.get("connection", ("", ""))[1].lower() == "close":
            self.close_connection = True

        head = [f"HTTP/1.1 {reply.status} {_phrase(reply.status)}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in merged.values()]
        head.append("\r\n")
        head_bytes = "".join(head).encode("latin-1")
        if self.command == "HEAD":
            self.wfile.write(head_bytes)
            return

        if not streamed:
            if reply.cut_after is not None and reply.cut_after < len(payload):
                self.wfile.write(head_bytes + payload[: reply.cut_after])
                self._drop()
                return
            self.wfile.write(head_bytes + payload)
            return

        self.wfile.write(head_bytes)
        for index, event in enumerate(events):
            if reply.cut_after is not None and index >= reply.cut_after:
                self._drop()
                return
            if index and not self._wait(reply.chunk_delay):
                self._drop()
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        if reply.cut_after is not None and len(events) <= reply.cut_after:
            # Cut requested at (or past) the end: still no terminating chunk.
            self._drop()
            return
        self.wfile.write(b"0\r\n\r\n")


# ------------------------------------------------------------- default behaviour


def _route(request: RecordedRequest) -> str:
    return request.path.split("?", 1)[0].rstrip("/")


def _is_anthropic(request: RecordedRequest) -> bool:
    """A request in the Anthropic dialect (by path, or by its version header)."""
    route = _route(request)
    return (
        route in _ANTHROPIC_ROUTES
        or route.startswith("/v1/messages/")
        or "anthropic-version" in request.headers
    )


def _check_auth(
    api_key: str | KeyCheck | None, request: RecordedRequest, anthropic: bool
) -> Reply | None:
    """The rejection of a request without the right credentials, if any."""
    if api_key is None:
        return None
    expected = api_key

    def accepts(token: str) -> bool:
        return expected(token) if callable(expected) else token == expected

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = scheme == "Bearer" and accepts(token)
    if not anthropic:
        if bearer:
            return None
        return error_reply(401, "Incorrect API key provided", code="invalid_api_key")
    key = request.headers.get("x-api-key")
    if not (bearer or (key is not None and accepts(key))):
        return anthropic_error_reply(401, "authentication_error", "invalid x-api-key")
    return _require_version(request)


def _require_version(request: RecordedRequest) -> Reply | None:
    if request.headers.get("anthropic-version"):
        return None
    return anthropic_error_reply(
        400, "invalid_request_error", "anthropic-version: header is required"
    )


def _default_reply(request: RecordedRequest, number: int) -> Reply:
    route = _route(request)
    method = request.method
    if method == "POST" and route == "/v1/messages":
        return _anthropic_messages(request, number)
    if method == "POST" and route == "/v1/messages/count_tokens":
        return _anthropic_count_tokens(request)
    if method == "GET" and route == "/v1/models" and _is_anthropic(request):
        return _anthropic_models(request)
    if method == "POST" and route == "/v1/chat/completions":
        return _chat_completions(request, number)
    if method == "POST" and route == "/v1/embeddings":
        return _embeddings(request)
    if method == "POST" and route == "/v1/audio/transcriptions":
        return _transcriptions(request)
    if method == "GET" and route == "/v1/models":
        return Reply(
            json={
                "object": "list",
                "data": [
                    {
                        "id": DEFAULT_MODEL,
                        "object": "model",
                        "created": 0,
                        "owned_by": "upstream",
                    }
                ],
            }
        )
    if _is_anthropic(request):
        return anthropic_error_reply(404, "not_found_error", "Not Found")
    return error_reply(
        404,
        f"Unknown request URL: {method} {route}. Please check the URL for typos.",
        code="unknown_url",
    )


def _json_object(request: RecordedRequest) -> dict[str, Any] | Reply:
    try:
        data = request.json()
    except ValueError as exc:
        return error_reply(400, f"We could not parse the JSON body: {exc}")
    if not isinstance(data, dict):
        return error_reply(400, "The request body must be a JSON object.")
    return data


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _chat_completions(request: RecordedRequest, number: int) -> Reply:
    data = _json_object(request)
    if isinstance(data, Reply):
        return data
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_reply(
            400, "'messages' must be a non-empty array.", param="messages"
        )
    text = ""
    prompt_tokens = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = _content_text(message.get("content"))
        prompt_tokens += _words(content)
        if message.get("role") == "user":
            text = content
    completion_tokens = _words(text)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    model = str(data.get("model") or DEFAULT_MODEL)
    common = {
        "id": f"chatcmpl-upstream-{number}",
        "created": int(time.time()),
        "model": model,
    }
    if not data.get("stream"):
        return Reply(
            json={
                **common,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": text,
                            "refusal": None,
                        },
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        )

    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        obj: dict[str, Any] = {
            **common,
            "object": "chat.completion.chunk",
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if include_usage:
            obj["usage"] = None
        return _json.dumps(obj)

    pieces = _WORD_PIECES.findall(text) or ([text] if text else [])
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append(
            _json.dumps(
                {
                    **common,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    events.append("[DONE]")
    return Reply(sse=events)


def _embedding(text: str, dimensions: int) -> list[float]:
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for offset in range(0, len(digest), 4):
            raw = int.from_bytes(digest[offset : offset + 4], "big")
            values.append(raw / 0xFFFFFFFF * 2.0 - 1.0)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _embeddings(request: RecordedRequest) -> Reply:
    data = _json_object(request)
    if isinstance(data, Reply):
        return data
    raw = data.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw:
        inputs = [item if isinstance(item, str) else _json.dumps(item) for item in raw]
    else:
        return error_reply(
            400, "'input' must be a string or a non-empty array.", param="input"
        )
    dimensions = data.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or dimensions < 1:
        return error_reply(
            400, "'dimensions' must be a positive integer.", param="dimensions"
        )
    as_base64 = data.get("encoding_format") == "base64"
    items = []
    for index, text in enumerate(inputs):
        vector = _embedding(text, dimensions)
        embedding: Any = vector
        if as_base64:
            packed = struct.pack(f"<{len(vector)}f", *vector)
            embedding = base64.b64encode(packed).decode("ascii")
        items.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(_words(text) for text in inputs)
    return Reply(
        json={
            "object": "list",
            "data": items,
            "model": str(data.get("model") or "text-embedding-3-small"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def _parse_multipart(content_type: str, body: bytes) -> dict[str, _Part]:
    """A small multipart/form-data parser (exact bytes, unlike ``email``)."""
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(
        boundary, str
    ):
        raise ValueError("expected multipart/form-data with a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    parts: dict[str, _Part] = {}
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        line_end = chunk.find(b"\r\n")
        if line_end < 0:
            raise ValueError("malformed multipart part")
        chunk = chunk[line_end + 2 :]
        if chunk.startswith(b"\r\n"):
            head, data = b"", chunk[2:]
        else:
            head, sep, data = chunk.partition(b"\r\n\r\n")
            if not sep:
                raise ValueError("malformed multipart part headers")
        headers = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        parts[name] = _Part(
            name=name,
            filename=headers.get_filename(),
            content_type=headers.get("content-type"),
            data=data,
        )
    return parts


def _transcriptions(request: RecordedRequest) -> Reply:
    try:
        parts = _parse_multipart(request.headers.get("content-type", ""), request.body)
    except ValueError as exc:
        return error_reply(400, f"Could not parse multipart form: {exc}")
    upload = parts.get("file")
    if upload is None:
        return error_reply(400, "Missing required parameter: 'file'.", param="file")
    if "model" not in parts:
        return error_reply(400, "Missing required parameter: 'model'.", param="model")

    def field_text(name: str) -> str | None:
        part = parts.get(name)
        return part.data.decode("utf-8", "replace") if part is not None else None

    response_format = field_text("response_format") or "json"
    language = field_text("language") or "english"
    text = f"transcribed {len(upload.data)} bytes of {upload.filename or 'file'}"
    if response_format == "json":
        return Reply(json={"text": text})
    if response_format == "text":
        return Reply(body=text.encode(), content_type="text/plain; charset=utf-8")
    if response_format == "verbose_json":
        return Reply(
            json={
                "task": "transcribe",
                "language": language,
                "duration": 1.5,
                "text": text,
                "segments": [
                    {
                        "id": 0,
                        "seek": 0,
                        "start": 0.0,
                        "end": 1.5,
                        "text": text,
                        "tokens": [],
                        "temperature": 0.0,
                        "avg_logprob": -0.1,
                        "compression_ratio": 1.0,
                        "no_speech_prob": 0.0,
                    }
                ],
            }
        )
    return error_reply(
        400,
        f"Unsupported response_format: {response_format!r}.",
        param="response_format",
    )


# ------------------------------------------------------------ Anthropic defaults


def _anthropic_json_object(request: RecordedRequest) -> dict[str, Any] | Reply:
    missing = _require_version(request)
    if missing is not None:
        return missing
    try:
        data = request.json()
    except ValueError as exc:
        return anthropic_error_reply(
            400, "invalid_request_error", f"There was an issue with the JSON: {exc}"
        )
    if not isinstance(data, dict):
        return anthropic_error_reply(
            400, "invalid_request_error", "The request body must be a JSON object."
        )
    return data


def _anthropic_text(content: Any) -> str:
    """Text of Anthropic ``content`` (string or blocks), tool results included."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    pieces = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            pieces.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            pieces.append(_anthropic_text(block.get("content")))
    return " ".join(pieces)


def _anthropic_input_tokens(data: dict[str, Any]) -> int | Reply:
    """Words of the messages and system prompt, or a 400 for bad ``messages``."""
    messages = data.get("messages")
    if messages is None:
        return anthropic_error_reply(
            400, "invalid_request_error", "messages: Field required"
        )
    if not isinstance(messages, list):
        return anthropic_error_reply(
            400, "invalid_request_error", "messages: Input should be a valid list"
        )
    words = _words(_anthropic_text(data.get("system")))
    for message in messages:
        if isinstance(message, dict):
            words += _words(_anthropic_text(message.get("content")))
    return words


def _anthropic_echo(messages: list[Any]) -> str:
    """The reply to the last user message (see :data:`ANTHROPIC_TOOL_RESULTS_TEXT`)."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        items = content if isinstance(content, list) else []
        blocks = [b for b in items if isinstance(b, dict)]
        if blocks and all(b.get("type") == "tool_result" for b in blocks):
            return ANTHROPIC_TOOL_RESULTS_TEXT
        return "".join(
            str(b.get("text", "")) for b in blocks if b.get("type") == "text"
        )
    return ""


def _anthropic_messages(request: RecordedRequest, number: int) -> Reply:
    data = _anthropic_json_object(request)
    if isinstance(data, Reply):
        return data
    input_tokens = _anthropic_input_tokens(data)
    if isinstance(input_tokens, Reply):
        return input_tokens
    if "max_tokens" not in data:
        return anthropic_error_reply(
            400, "invalid_request_error", "max_tokens: Field required"
        )
    text = _anthropic_echo(data["messages"])
    output_tokens = _words(text)
    message: dict[str, Any] = {
        "id": f"msg_upstream_{number}",
        "type": "message",
        "role": "assistant",
        "model": str(data.get("model") or ANTHROPIC_MODELS[0][0]),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    if not data.get("stream"):
        return Reply(json=message)
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    pieces = _WORD_PIECES.findall(text) or ([text] if text else [])
    empty_block = {"type": "text", "text": ""}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": empty_block}),
        ("ping", {}),
    ]
    events += [
        (
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    events += [
        ("content_block_stop", {"index": 0}),
        (
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        ("message_stop", {}),
    ]
    return anthropic_sse(events)


def _anthropic_count_tokens(request: RecordedRequest) -> Reply:
    data = _anthropic_json_object(request)
    if isinstance(data, Reply):
        return data
    input_tokens = _anthropic_input_tokens(data)
    if isinstance(input_tokens, Reply):
        return input_tokens
    return Reply(json={"input_tokens": input_tokens})


def _anthropic_models(request: RecordedRequest) -> Reply:
    query = urllib.parse.parse_qs(request.path.partition("?")[2])
    raw_limit = query.get("limit", ["20"])[-1]
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        return anthropic_error_reply(
            400,
            "invalid_request_error",
            f"limit: Input should be between 1 and 1000, got {raw_limit!r}",
        )
    ids = [model_id for model_id, _ in ANTHROPIC_MODELS]
    start = 0
    after = query.get("after_id", [None])[-1]
    if after is not None:
        # An unknown cursor yields an empty last page.
        start = ids.index(after) + 1 if after in ids else len(ids)
    page = ANTHROPIC_MODELS[start : start + limit]
    data = [
        {
            "type": "model",
            "id": model_id,
            "display_name": name,
            "created_at": ANTHROPIC_MODELS_CREATED_AT,
        }
        for model_id, name in page
    ]
    return Reply(
        json={
            "data": data,
            "has_more": start + limit < len(ids),
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )
