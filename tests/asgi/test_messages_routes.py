"""``/v1/messages`` on `httpx.ASGITransport`: Anthropic's error envelope for
every refusal, bad blocks named, and a caller who leaves mid-stream cancels
the call (recorded as cancelled)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import palyra
from palyra.asgi import create_app
from tests.asgi.server import leave_mid_stream

pytestmark = [pytest.mark.anyio]

HELLO = [{"role": "user", "content": "Hello there"}]


def setup(home: Path) -> tuple[palyra.Palyra, palyra.MemoryLedger, Any, str]:
    ledger = palyra.MemoryLedger()
    client = palyra.Palyra(home=home, ledger=ledger)
    _, secret = client.tokens.create("t")
    return client, ledger, create_app(client), secret


def anthropic_error(response: httpx.Response) -> dict[str, Any]:
    data = response.json()
    assert data["type"] == "error"
    assert set(data["error"]) == {"type", "message"}
    return data["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{nope", 400, "invalid_request_error"),
        (
            {"model": "deterministic-chat", "messages": HELLO},
            400,
            "invalid_request_error",
        ),
        (
            {"model": "deterministic-chat", "max_tokens": 5, "messages": []},
            400,
            "invalid_request_error",
        ),
        (
            {
                "model": "deterministic-chat",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "video"}]}],
            },
            400,
            "invalid_request_error",
        ),
        (
            {"model": "ghost", "max_tokens": 5, "messages": HELLO},
            404,
            "not_found_error",
        ),
    ],
)
async def test_refusals_use_anthropic_s_envelope(
    tmp_path: Path, body: Any, status: int, kind: str
) -> None:
    client, _, app, secret = setup(tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await http.post(
            "/v1/messages", content=content, headers={"x-api-key": secret}
        )
        assert response.status_code == status
        assert anthropic_error(response)["type"] == kind
        unauthorised = await http.post("/v1/messages", json={})
        assert unauthorised.status_code == 401
        assert anthropic_error(unauthorised)["type"] == "authentication_error"
    await client.aclose()


async def test_a_caller_who_leaves_mid_stream_cancels_the_call(tmp_path: Path) -> None:
    client, ledger, app, secret = setup(tmp_path)
    client.deterministic().enqueue(" ".join(f"w{i}" for i in range(200)))
    body = json.dumps(
        {
            "model": "deterministic-chat",
            "max_tokens": 500,
            "stream": True,
            "messages": HELLO,
        }
    ).encode()
    written = await leave_mid_stream(
        app, "/v1/messages", secret, body, b"content_block_delta"
    )
    assert b"message_stop" not in written
    (record,) = ledger.records()
    assert record.status == "cancelled"
    await client.aclose()
