"""Who a call is for: ``agent``, ``session``, ``principal`` and ``tags`` on every
operation and on `Palyra.bind`, checked, carried to ``reply.palyra`` and to
Anthropic's ``metadata.user_id``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import palyra
from palyra._core import MAX_TAGS
from tests.helpers import DRIVERS, drain, start_stream

USER = [{"role": "user", "content": "who am I"}]
AUDIO = ("clip.mp3", b"ID3" + bytes(range(32)))


def _client() -> palyra.Palyra:
    config = {
        "providers": [{"id": "det", "kind": "deterministic"}],
        "models": [
            {"id": "chat", "provider": "det"},
            {"id": "emb", "provider": "det", "role": "embeddings"},
            {"id": "asr", "provider": "det", "role": "audio_transcription"},
        ],
    }
    return palyra.Palyra(config)


def _who(info: palyra.PalyraInfo | None) -> tuple[Any, ...]:
    assert info is not None
    return (info.agent, info.session, info.principal, info.tags)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_every_operation_carries_the_caller(driver: str) -> None:
    client = _client()
    who = {"agent": "a1", "session": "s1", "principal": "user:42", "tags": {"k": "v"}}
    expected = ("a1", "s1", "user:42", {"k": "v"})
    if driver == "sync":
        results = [
            client.chat(USER, **who),
            client.embed("text", **who),
            client.transcribe(AUDIO, **who),
        ]
        stream = client.stream(USER, **who)
        client.count_tokens(USER, **who)
    else:
        results = [
            await client.achat(USER, **who),
            await client.aembed("text", **who),
            await client.atranscribe(AUDIO, **who),
        ]
        stream = await client.astream(USER, **who)
        await client.acount_tokens(USER, **who)
    assert [_who(r.palyra) for r in results] == [expected] * 3
    assert _who(stream.palyra) == expected  # known before the end
    await drain(stream)
    assert _who(stream.palyra) == expected


def test_an_unbound_call_says_nobody() -> None:
    reply = _client().chat(USER)
    assert _who(reply.palyra) == (None, None, None, {})


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_bound_values_are_defaults_and_calls_override_them(driver: str) -> None:
    client = _client()
    bound = client.bind(agent="planner", principal="user:1", tags={"team": "a"})
    again = bound.bind(session="conv-9", tags={"env": "test"})
    stream = await start_stream(again, driver, USER, agent="writer", tags={"team": "b"})
    await drain(stream)
    assert _who(stream.palyra) == (
        "writer",
        "conv-9",
        "user:1",
        {"team": "b", "env": "test"},
    )
    # Binding changed nothing on the views it came from.
    assert _who(bound.chat(USER).palyra) == ("planner", None, "user:1", {"team": "a"})
    assert _who(client.chat(USER).palyra) == (None, None, None, {})


def test_a_view_shares_pools_breakers_and_backends() -> None:
    client = _client()
    view = client.bind(agent="x").bind(session="y")
    assert isinstance(view, palyra.Palyra)
    assert view._pipeline is client._pipeline
    assert view._sync is client._sync
    assert view._async is client._async
    view.deterministic().enqueue("scripted")
    assert client.chat(USER).choices[0].message.content == "scripted"
    assert repr(view) == ("Palyra(providers=[det], models=3, agent='x', session='y')")


def test_a_subclass_binds_to_its_own_class() -> None:
    class App(palyra.Palyra):
        pass

    assert type(App().bind(agent="x")) is App


def test_closing_a_view_closes_the_client() -> None:
    """One lifecycle: a view is the same client seen from another caller."""
    config = {
        "providers": [{"id": "up", "kind": "openai", "auth_header": "none"}],
        "models": [{"id": "m", "provider": "up"}],
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    client = palyra.Palyra(config, transport=transport)
    client.bind(agent="x").close()
    with pytest.raises(RuntimeError, match="closed"):
        client.chat(USER)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("agent", "", "agent: must be 1-128 characters"),
        ("agent", "has space", "agent: must be 1-128 characters"),
        ("agent", "a" * 129, "agent: must be 1-128 characters"),
        ("agent", "-leading", "agent: must be 1-128 characters"),
        ("agent", "tab\there", "agent: must be"),
        ("agent", 7, "agent: must be a string, got int"),
        ("session", "x" * 257, "session: must be 1-256 characters"),
        ("session", "line\nbreak", "session: must be"),
        ("principal", "user 42", "principal: must be"),
        ("principal", ["user:1"], "principal: must be a string, got list"),
        ("tags", "team=a", "tags: must be a mapping of str to str, got str"),
        ("tags", [], "tags: must be a mapping of str to str, got list"),
        ("tags", {"Team": "a"}, "tags: keys must be 1-64 characters"),
        ("tags", {"": "a"}, "tags: keys must be"),
        ("tags", {"k" * 65: "a"}, "tags: keys must be"),
        ("tags", {1: "a"}, "tags: keys must be"),
        ("tags", {"k": 1}, "tags['k']: must be a string, got int"),
        ("tags", {"k": "x" * 257}, "tags['k']: must be at most 256 printable"),
        ("tags", {"k": "bell\a"}, "tags['k']: must be at most 256 printable"),
        (
            "tags",
            {f"k{i}": "v" for i in range(MAX_TAGS + 1)},
            "tags: at most 16 tags",
        ),
    ],
)
def test_bad_values_are_typed_errors_naming_the_field(
    field: str, value: Any, message: str
) -> None:
    client = _client()
    for attempt in (
        lambda: client.bind(**{field: value}),
        lambda: client.chat(USER, **{field: value}),
        lambda: client.embed("x", **{field: value}),
    ):
        with pytest.raises(palyra.InvalidRequestError, match="^" + _escape(message)):
            attempt()


def test_merged_tags_are_bounded_too() -> None:
    bound = _client().bind(tags={f"a{i}": "v" for i in range(10)})
    with pytest.raises(palyra.InvalidRequestError, match="at most 16 tags"):
        bound.chat(USER, tags={f"b{i}": "v" for i in range(10)})


def test_valid_identifiers_pass() -> None:
    reply = _client().chat(
        USER,
        agent="agent.v2:eu@team-1",
        session="550e8400-e29b-41d4-a716-446655440000",
        principal="token:tok_AbC/xyz+=",
        tags={"team": "Billing & Ops", "run.id": "", "a:b-c_d": "ümlaut ok"},
    )
    assert reply.palyra is not None
    assert reply.palyra.tags["team"] == "Billing & Ops"


@pytest.mark.parametrize(
    ("call", "options", "user_id"),
    [
        ({"principal": "user:42", "agent": "bot"}, {}, "user:42"),
        ({"agent": "bot"}, {}, "bot"),
        ({}, {}, None),
        ({"principal": "user:42"}, {"user": "explicit"}, "explicit"),
        ({"principal": "user:42"}, {"metadata": {"user_id": "meta"}}, "meta"),
    ],
)
def test_anthropic_user_id_comes_from_the_caller_when_none_is_given(
    call: dict[str, Any], options: dict[str, Any], user_id: str | None
) -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude",
                "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        )

    config = {
        "providers": [{"id": "ant", "kind": "anthropic", "auth_header": "none"}],
        "models": [{"id": "claude", "provider": "ant"}],
    }
    client = palyra.Palyra(config, transport=httpx.MockTransport(handler))
    client.chat(USER, **call, **options)
    assert sent[0].get("metadata", {}).get("user_id") == user_id


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_embed_and_transcribe_refuse_unknown_options(driver: str) -> None:
    client = _client()
    embed = client.embed if driver == "sync" else client.aembed
    transcribe = client.transcribe if driver == "sync" else client.atranscribe

    async def call(method: Any, *args: Any, **options: Any) -> Any:
        result = method(*args, **options)
        return await result if driver == "async" else result

    with pytest.raises(TypeError, match=r"unknown embed option\(s\): encoding"):
        await call(embed, "x", encoding="base64")
    with pytest.raises(TypeError, match=r"unknown transcribe option\(s\): speed"):
        await call(transcribe, AUDIO, speed=2)
    assert client.deterministic().history == []  # nothing was sent


def _escape(text: str) -> str:
    import re

    return re.escape(text)
