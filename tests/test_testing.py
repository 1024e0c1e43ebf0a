"""palyra.testing.OpenAIMock (and the deterministic backend it shares):
the OpenAI wire format for users' own tests."""

from __future__ import annotations

import json

import httpx
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


def test_a_stop_sequence_cuts_the_answer() -> None:
    """As a model stops at a stop sequence, the scripted content ends before it."""
    mock = OpenAIMock()
    mock.enqueue("alpha STOP beta", tool_calls=[{"name": "never_sent"}])
    mock.enqueue("alpha STOP beta", finish_reason="length")
    with palyra.Palyra(CONFIG, transport=mock.transport) as client:
        cut = client.chat([{"role": "user", "content": "hi"}], stop=["beta", "STOP"])
        scripted = client.chat([{"role": "user", "content": "hi"}], stop="STOP")
        whole = client.chat([{"role": "user", "content": "a STOP"}], stop="END")
    assert cut.choices[0].message.content == "alpha "
    assert cut.choices[0].message.tool_calls is None
    assert cut.choices[0].finish_reason == "stop"
    assert scripted.choices[0].message.content == "alpha "
    assert scripted.choices[0].finish_reason == "length"
    assert whole.choices[0].message.content == "a STOP"


def test_the_echo_is_the_last_user_message_with_text() -> None:
    """A trailing user message without text does not turn the echo into ack."""
    mock = OpenAIMock()
    with palyra.Palyra(CONFIG, transport=mock.transport) as client:
        reply = client.chat(
            [
                {"role": "user", "content": "the question"},
                {"role": "user", "content": [{"type": "text", "text": " "}]},
            ]
        )
        alone = client.chat([{"role": "system", "content": "no user"}])
    assert reply.choices[0].message.content == "the question"
    assert alone.choices[0].message.content == "ack"


def test_unknown_paths_are_404_and_take_no_reply() -> None:
    """A path the mock does not serve is refused before any scripted reply."""
    mock = OpenAIMock()
    mock.enqueue("kept")
    with httpx.Client(transport=mock.transport) as http:
        missed = http.post("https://api.openai.com/v1/messages", json={})
    assert missed.status_code == 404
    assert missed.json()["error"]["message"] == "unknown path /v1/messages"
    with palyra.Palyra(CONFIG, transport=mock.transport) as client:
        reply = client.chat([{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "kept"


@pytest.mark.anyio
async def test_the_deterministic_provider_lists_its_backend_models() -> None:
    """provider_models on a deterministic provider lists its backend's models
    (none until told), sync and async."""
    with palyra.Palyra() as client:
        assert client.provider_models("deterministic") == []
        client.deterministic().models = ["deterministic-chat"]
        [model] = await client.aprovider_models("deterministic")
    assert (model.id, model.provider) == ("deterministic-chat", "deterministic")
