"""palyra.testing: the OpenAI mock transport for users' own tests."""

from __future__ import annotations

import json

import pytest

import palyra
from palyra.testing import OpenAIMock

CONFIG = {
    "providers": [{"id": "up", "kind": "openai", "auth_header": "none"}],
    "models": [
        {"id": "gpt-4o-mini", "provider": "up"},
        {"id": "emb", "provider": "up", "role": "embeddings", "dimensions": 4},
    ],
}


def test_mock_answers_chat_stream_and_embeddings() -> None:
    """Echo, SSE and vectors in the OpenAI wire format, offline."""
    mock = OpenAIMock()
    mock.enqueue("scripted")
    with palyra.Palyra(CONFIG, transport=mock.transport) as client:
        first = client.chat([{"role": "user", "content": "hi"}])
        with client.stream([{"role": "user", "content": "a b c"}]) as stream:
            text = "".join(c.choices[0].delta.content or "" for c in stream)
        vectors = client.embed(["x", "y"])
    assert first.choices[0].message.content == "scripted"
    assert text == "a b c"
    assert len(vectors.data[1].embedding) == 4
    assert mock.history[1]["stream_options"] == {"include_usage": True}
    assert (
        json.dumps(mock.history[0]["messages"]) == '[{"role": "user", "content": "hi"}]'
    )


@pytest.mark.anyio
async def test_mock_serves_async_clients() -> None:
    """The same mock works as an async transport."""
    mock = OpenAIMock()
    mock.enqueue(status=503, error="down", times=3)

    async def no_wait(seconds: float) -> None:
        """Retries without waiting."""

    async with palyra.Palyra(
        CONFIG, async_transport=mock.transport, async_sleep=no_wait
    ) as client:
        with pytest.raises(palyra.InternalServerError, match="down"):
            await client.achat([{"role": "user", "content": "hi"}])
