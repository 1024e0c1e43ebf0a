"""End to end (issue 13, first part): uvicorn on 127.0.0.1 serving the
``/v1`` app, driven by the official ``openai`` SDK with only ``base_url``
changed: chat, streams with the SDK's own helpers, tools, embeddings, models,
and the errors mapped to the SDK's own exception classes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import palyra
from palyra.asgi import create_app
from tests.asgi.server import serving

HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(name="served", scope="module")
def served_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("home")
    ledger = palyra.MemoryLedger()
    client = palyra.Palyra(
        {
            "providers": [{"id": "local", "kind": "deterministic"}],
            "models": [
                {
                    "id": "bot",
                    "provider": "local",
                    "pricing": {"input": 1, "output": 2},
                    "capabilities": {"vision": True},
                },
                {
                    "id": "emb",
                    "provider": "local",
                    "role": "embeddings",
                    "dimensions": 8,
                },
                {"id": "ears", "provider": "local", "role": "audio_transcription"},
            ],
            "budgets": [
                {"id": "tiny", "scope": "agent", "value": "broke", "hard_limit": "1e-9"}
            ],
        },
        home=home,
        ledger=ledger,
    )
    _, secret = client.tokens.create("sdk")
    with serving(create_app(client)) as base_url:
        made = {
            "client": client,
            "ledger": ledger,
            "secret": secret,
            "sdk": openai.OpenAI(api_key=secret, base_url=base_url, max_retries=0),
            "base_url": base_url,
        }
        yield made
        made["sdk"].close()


def test_chat(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    reply = sdk.chat.completions.create(model="bot", messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.total_tokens > 0


def test_stream_with_the_sdk_helper(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    with sdk.chat.completions.stream(model="bot", messages=HELLO) as stream:  # type: ignore[arg-type]
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content
    raw = sdk.chat.completions.create(
        model="bot",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(raw)
    assert chunks[-1].usage is not None


def test_tools_round_trip(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    served["client"].deterministic().enqueue(
        tool_calls=[{"name": "lookup", "arguments": {"city": "Lima"}}]
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                },
            },
        }
    ]
    reply = sdk.chat.completions.create(model="bot", messages=HELLO, tools=tools)  # type: ignore[arg-type]
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    follow = sdk.chat.completions.create(
        model="bot",
        messages=[  # type: ignore[arg-type]
            *HELLO,
            reply.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=tools,  # type: ignore[arg-type]
    )
    assert follow.choices[0].message.content


def test_embeddings_and_models(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    vectors = sdk.embeddings.create(
        model="emb", input=["a", "b"]
    )  # the SDK asks base64
    assert [len(d.embedding) for d in vectors.data] == [8, 8]
    assert {m.id for m in sdk.models.list()} == {"bot", "emb", "ears"}
    assert sdk.models.retrieve("bot").owned_by == "local"


def test_vision(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    pixel = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADU"
        "lEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    reply = sdk.chat.completions.create(
        model="bot",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image"},
                    {"type": "image_url", "image_url": {"url": pixel}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content
    sent = served["client"].deterministic().history[-1]
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == pixel


def test_transcriptions(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    audio = b"RIFF" + bytes(range(256)) * 64
    plain = sdk.audio.transcriptions.create(model="ears", file=("clip.wav", audio))
    assert plain.text == f"[{len(audio)} bytes of clip.wav]"
    text = sdk.audio.transcriptions.create(
        model="ears", file=("clip.wav", audio), response_format="text"
    )
    assert text.strip() == plain.text
    verbose = sdk.audio.transcriptions.create(
        model="ears",
        file=("clip.wav", audio),
        response_format="verbose_json",
        language="de",
        timestamp_granularities=["segment"],
    )
    assert verbose.language == "de"
    assert verbose.segments
    assert verbose.segments[0].text == plain.text
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.audio.transcriptions.create(
            model="ears", file=("clip.wav", audio), response_format="srt"
        )
    assert refused.value.param == "response_format"  # type: ignore[attr-defined]


def test_n_is_refused_where_the_model_cannot_serve_it(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="bot", messages=HELLO, n=2)  # type: ignore[arg-type]
    assert refused.value.param == "n"  # type: ignore[attr-defined]
    assert refused.value.code == "unsupported_capability"  # type: ignore[attr-defined]
    one = sdk.chat.completions.create(model="bot", messages=HELLO, n=1)  # type: ignore[arg-type]
    assert len(one.choices) == 1
    unset = sdk.chat.completions.create(
        model="bot",
        messages=HELLO,  # type: ignore[arg-type]
        extra_body={"n": None},  # null is the API's default, as 1 is
    )
    assert len(unset.choices) == 1


def test_more_statuses_map_to_the_sdk_s_exceptions(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    served["client"].deterministic().enqueue(status=422, error="unprocessable")
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.chat.completions.create(model="bot", messages=HELLO)  # type: ignore[arg-type]
    _, limited = served["client"].tokens.create("limited", rate_limit=1)
    paced = openai.OpenAI(api_key=limited, base_url=served["base_url"], max_retries=0)
    paced.models.list()
    with pytest.raises(openai.RateLimitError) as limit:
        paced.models.list()
    assert 1 <= int(limit.value.response.headers["retry-after"]) <= 60
    patient = openai.OpenAI(
        api_key=served["secret"], base_url=served["base_url"], max_retries=3
    )
    before = len(served["ledger"].records())
    with pytest.raises(openai.RateLimitError):  # x-should-retry: false is obeyed
        patient.chat.completions.create(
            model="bot",
            messages=HELLO,
            extra_headers={"x-palyra-agent": "broke"},  # type: ignore[arg-type]
        )
    after = served["ledger"].records()[before:]
    assert [r.error_class for r in after] == ["BudgetExceededError"]  # one, no retry


def test_a_body_over_the_limit_and_a_deadline(
    tmp_path: Path, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import FAKE_KEY
    from tests.helpers import loopback_transports
    from tests.upstream import Reply

    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client = palyra.Palyra(
        {
            "providers": [
                {
                    "id": "up",
                    "kind": "openai",
                    "base_url": upstream.base_url,
                    "api_key_env": "UP_KEY",
                    "max_retries": 0,
                }
            ],
            "models": [{"id": "gpt-4o-mini", "provider": "up"}],
        },
        home=tmp_path,
        ledger=False,
        **loopback_transports(),
    )
    _, secret = client.tokens.create("sdk")
    with serving(create_app(client, max_body_bytes=4096)) as base_url:
        sdk = openai.OpenAI(api_key=secret, base_url=base_url, max_retries=0)
        with pytest.raises(openai.APIStatusError) as large:
            sdk.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "x" * 5000}],
            )
        assert large.value.status_code == 413
        upstream.enqueue(Reply(json={}, delay=3.0))
        with pytest.raises(openai.InternalServerError) as late:
            sdk.chat.completions.create(
                model="gpt-4o-mini",
                messages=HELLO,  # type: ignore[arg-type]
                extra_body={},
                timeout=10,
                extra_headers={"x-palyra-deadline": "0.3"},
            )
        assert late.value.status_code == 504


def test_errors_map_to_the_sdk_s_exceptions(served: dict[str, Any]) -> None:
    sdk: openai.OpenAI = served["sdk"]
    base = served["base_url"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            api_key="pk-palyra-nope", base_url=base, max_retries=0
        ).models.list()
    _, narrow = served["client"].tokens.create("narrow", scopes=("embeddings",))
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(
            api_key=narrow, base_url=base, max_retries=0
        ).chat.completions.create(
            model="bot",
            messages=HELLO,  # type: ignore[arg-type]
        )
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nope", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="bot", messages=[])
    assert "messages" in str(bad.value)
    with pytest.raises(openai.RateLimitError) as quota:
        sdk.chat.completions.create(
            model="bot",
            messages=HELLO,
            extra_headers={"x-palyra-agent": "broke"},  # type: ignore[arg-type]
        )
    assert quota.value.response.headers["x-should-retry"] == "false"


def test_the_sdk_retries_honour_retry_after(tmp_path: Path) -> None:
    """An open breaker answers 503 with retry-after; the SDK waits that long
    and its retry is the probe that closes the breaker."""
    import time

    client = palyra.Palyra(
        {
            "providers": [
                {
                    "id": "local",
                    "kind": "deterministic",
                    "max_retries": 0,
                    "circuit_breaker_threshold": 1,
                    "circuit_breaker_cooldown": 1,
                }
            ],
            "models": [{"id": "bot", "provider": "local"}],
        },
        home=tmp_path,
        ledger=False,
    )
    _, secret = client.tokens.create("sdk")
    client.deterministic().enqueue(status=500, error="down")
    with serving(create_app(client)) as base_url:
        once = openai.OpenAI(api_key=secret, base_url=base_url, max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            once.chat.completions.create(model="bot", messages=HELLO)  # type: ignore[arg-type]
        assert failed.value.status_code == 502  # the upstream failed, not the caller
        with pytest.raises(openai.APIStatusError) as open_breaker:
            once.chat.completions.create(model="bot", messages=HELLO)  # type: ignore[arg-type]
        assert open_breaker.value.status_code == 503
        assert open_breaker.value.response.headers["retry-after"] == "1"
        patient = openai.OpenAI(api_key=secret, base_url=base_url, max_retries=2)
        started = time.monotonic()
        reply = patient.chat.completions.create(model="bot", messages=HELLO)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
        assert time.monotonic() - started >= 0.5  # it waited for the breaker
