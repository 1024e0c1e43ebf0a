"""Raw ASGI plumbing: the request's parts, its body read within a limit, and
answers (JSON, server-sent events) with palyra's headers on each."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from .._exceptions import InvalidRequestError
from ._errors import Problem

__all__ = ["Exchange", "caller_of", "new_request_id", "upstream_headers"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")


def under_mount(scope: Scope) -> str:
    """The request's path below the app's mount point (``root_path``)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


async def lifespan(client: Any, receive: Receive, send: Send) -> None:
    """ASGI's lifespan: started at once; its shutdown closes ``client``."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


def new_request_id() -> str:
    """palyra's id of one request (``x-request-id`` on its answer)."""
    return "req_" + secrets.token_hex(12)


class Exchange:
    """One HTTP request and its answer.

    Args:
        scope, receive, send: The ASGI triple.
        path: The path under the app's mount point.
        extra: Headers to put on every answer (CORS, the request id).
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        self.scope, self.receive, self._send = scope, receive, send
        self.method: str = scope["method"]
        self.path = path
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope["headers"]
        }
        self.extra = extra
        self.started = False  # whether the answer's head went out
        self.disconnected = False

    def query(self, name: str) -> str | None:
        """The last value of ``name`` in the query string, if given."""
        raw = self.scope.get("query_string", b"").decode("latin-1")
        got = parse_qs(raw).get(name)
        return got[-1] if got else None

    async def chunks(self, limit: int) -> AsyncIterator[bytes]:
        """The body as it arrives, refused with 413 as soon as it passes
        ``limit`` (a declared length over it is refused before any is read)."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise Problem(400, "the client went away while sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            yield chunk
            if not message.get("more_body", False):
                return

    async def body(self, limit: int) -> bytes:
        """The whole body, refused with 413 as soon as it passes ``limit``."""
        return b"".join([chunk async for chunk in self.chunks(limit)])

    async def json(self, limit: int) -> dict[str, Any]:
        """The body as a JSON object (400 for anything else)."""
        raw = await self.body(limit)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # too deep too
            raise Problem(
                400, "the body is not valid JSON", code="invalid_json"
            ) from None
        if not isinstance(data, dict):
            raise Problem(400, "the body must be a JSON object", code="invalid_json")
        return data

    async def answer(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """A whole answer, JSON unless the headers say otherwise."""
        given = headers or []
        kind = [] if any(k == b"content-type" for k, _ in given) else [_JSON]
        head = [*kind, (b"content-length", str(len(body)).encode()), *self.extra]
        await self.start(status, [*head, *given])
        await self.write(body, more=False)

    async def answer_json(
        self, status: int, data: Any, headers: dict[str, str] | None = None
    ) -> None:
        """``data`` as JSON."""
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        await self.answer(status, body, _encoded(headers))

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the answer's head."""
        self.started = True
        await self._send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )

    async def write(self, data: bytes, *, more: bool = True) -> None:
        """Send part of the body (``more=False``: the last part)."""
        await self._send(
            {"type": "http.response.body", "body": data, "more_body": more}
        )

    async def until_disconnect(self) -> None:
        """Return once the caller has gone (a stream watches this, so that a
        caller who leaves closes the upstream call)."""
        while True:
            if (await self.receive())["type"] == "http.disconnect":
                self.disconnected = True
                return

    async def start_events(self, headers: dict[str, str] | None = None) -> None:
        """The head of a server-sent events answer."""
        head = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *self.extra,
            *_encoded(headers),
        ]
        await self.start(200, head)


def _encoded(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]


def upstream_headers(reply: Any) -> dict[str, str]:
    """``x-upstream-request-id``: the serving upstream's request id, if any."""
    info = getattr(reply, "palyra", None)
    attempts = info.attempts if info is not None else []
    found = attempts[-1].request_id if attempts else None
    return {"x-upstream-request-id": found} if found else {}


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"the body is larger than this server's limit of {limit:,} bytes",
        code="request_too_large",
    )


def caller_of(headers: dict[str, str]) -> dict[str, Any]:
    """``agent``, ``session`` and ``tags`` named by the ``x-palyra-*`` headers
    (``x-palyra-tags: team=search,env=prod``; checked by the client), and the
    call's ``deadline`` from ``x-palyra-deadline``."""
    found: dict[str, Any] = {}
    for name in ("agent", "session"):
        value = headers.get(f"x-palyra-{name}")
        if value:
            found[name] = value.strip()
    tags = headers.get("x-palyra-tags")
    if tags:
        pairs = {}
        for item in tags.split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidRequestError(
                    "x-palyra-tags: must be key=value pairs separated by commas"
                )
            pairs[key.strip()] = value.strip()
        found["tags"] = pairs
    deadline = headers.get("x-palyra-deadline")
    if deadline:
        found["deadline"] = _seconds(deadline)
    return found


def _seconds(raw: str) -> float:
    """``x-palyra-deadline``: the seconds the whole call may take (its
    retries and failovers included); past it the answer is 504."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 86_400:  # NaN and inf fail too
        raise InvalidRequestError(
            "x-palyra-deadline: must be a number of seconds, above 0 and below 86400"
        )
    return value
