"""uvicorn on 127.0.0.1 in a thread, serving palyra's ``/v1`` app, for the
end-to-end tests with the official SDKs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: Any, **settings: Any) -> Iterator[str]:
    """Serve ``app``; yields its ``/v1`` base URL; stops it afterwards.
    ``settings`` go to `uvicorn.Config` (``log_config=None``: its logs to
    the root logger, say)."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        **{"log_level": "warning", "lifespan": "on", **settings},
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


async def leave_mid_stream(
    app: Any, path: str, secret: str, body: bytes, marker: bytes
) -> bytes:
    """Drive ``app`` as a caller who disconnects once a body part holding
    ``marker`` has arrived; returns everything the app wrote."""
    import asyncio

    sent: list[dict[str, Any]] = []
    seen = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await seen.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if marker in message.get("body", b""):
            seen.set()
            await asyncio.sleep(0)  # let the disconnect be noticed

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {secret}".encode())],
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body"
    )
