"""A fast OpenAI-compatible upstream on 127.0.0.1 for the gateway benchmark.

``python bench/_fast_upstream.py PORT`` serves canned answers from a raw
asyncio protocol (HTTP/1.1 keep-alive, no framework), so that what a gateway
in front of it adds is what is measured, not the upstream's own cost:
``POST /v1/chat/completions`` answers a ``chat.completion`` or, when the body
asks for a stream, six SSE chunks and ``[DONE]``; ``POST /v1/embeddings`` a
vector; anything else a 404. It prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import json
import sys

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }
).encode()


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


_USAGE = (
    b"data: "
    + json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }
    ).encode()
    + b"\n\n"
)
_STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        *(_chunk({"content": w}) for w in ("Hello ", "from ", "up", "stream", ".")),
        _chunk({}, "stop"),
    ]
)
_EMBEDDING = json.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1] * 8}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
).encode()


def _response(status: str, kind: bytes, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: ".encode()
        + kind
        + f"\r\ncontent-length: {len(body)}\r\nx-request-id: up-1\r\n\r\n".encode()
    )
    return head + body


def answer(path: bytes, body: bytes) -> bytes:
    """The canned answer to one request."""
    if path.endswith(b"/chat/completions"):
        if b'"stream":true' in body or b'"stream": true' in body:
            usage = _USAGE if b"include_usage" in body else b""
            return _response(
                "200 OK", b"text/event-stream", _STREAM + usage + b"data: [DONE]\n\n"
            )
        return _response("200 OK", b"application/json", _COMPLETION)
    if path.endswith(b"/embeddings"):
        return _response("200 OK", b"application/json", _EMBEDDING)
    return _response("404 Not Found", b"application/json", b'{"error":{}}')


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            path = head.split(b" ", 2)[1]
            assert self.transport is not None
            self.transport.write(answer(path, body))


async def serve(port: int) -> None:
    """Serve until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop  # the fastest loop where installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(int(sys.argv[1])))
