"""A /v1 client that leaves mid-stream cancels its call: the call's events
say so once, in order, like the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import palyra
from palyra.asgi import create_app
from tests.asgi.server import leave_mid_stream
from tests.asgi.test_openai_routes import HELLO, config
from tests.observe.test_events import Events

pytestmark = pytest.mark.anyio


async def test_a_client_that_leaves_mid_stream_is_one_cancelled_call(
    tmp_path: Path,
) -> None:
    events = Events()
    ledger = palyra.MemoryLedger()
    client = palyra.Palyra(config(), home=tmp_path, ledger=ledger, on_event=events)
    app = create_app(client)
    _, secret = client.tokens.create("tests")
    client.deterministic().enqueue(" ".join(f"w{i}" for i in range(200)))
    body = json.dumps({"model": "bot", "messages": HELLO, "stream": True}).encode()
    await leave_mid_stream(app, "/v1/chat/completions", secret, body, b"data: ")
    assert client.flush(5)
    assert events.kinds() == ["start", "first_token", "cancelled"]
    (record,) = ledger.records()
    assert record.status == "cancelled"
    cancelled = events.seen[-1]
    assert cancelled.usage is not None
    assert cancelled.usage.output == record.output
    await client.aclose()
