"""Golden tests: recorded OpenAI streams through the real client path.

Each recorded ``.sse`` file is served by an `httpx.MockTransport` as the upstream
body. The expected answer is computed here, independently of palyra, by parsing
the file with `json`; the chunks `client.stream` yields and the completion it
assembles must match it, sync and async alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import PieceTransport
from tests.upstream import fixtures_dir, load_recorded

FILES = sorted(path.name for path in (fixtures_dir() / "openai").glob("*.sse"))
RECORDED = [pytest.param(name, id=name.removesuffix(".sse")) for name in FILES]
MESSAGES = [{"role": "user", "content": "What's the weather like in SF?"}]
SSE_HEADERS = {"content-type": "text/event-stream"}
PIECE = 37  # bytes per network read: splits events, lines and UTF-8 sequences


@dataclass
class ToolCallPlan:
    """One tool call as the recorded pieces add it up."""

    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class ChoicePlan:
    """One choice as the recorded pieces add it up."""

    content: str = ""
    refusal: str = ""
    tool_calls: dict[int, ToolCallPlan] = field(default_factory=dict)
    finish_reason: str | None = None
    logprobs: dict[str, list[Any]] | None = None


@dataclass
class Expected:
    """What a recorded stream says, parsed with nothing but `json`."""

    chunks: list[dict[str, Any]]
    choices: dict[int, ChoicePlan]
    usage: dict[str, Any] | None


def expected_from(raw: bytes) -> Expected:
    """Parse a recorded OpenAI stream independently of palyra."""
    chunks: list[dict[str, Any]] = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line.removeprefix("data: ")))
    choices: dict[int, ChoicePlan] = {}
    usage = None
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            plan = choices.setdefault(choice["index"], ChoicePlan())
            delta = choice.get("delta") or {}
            plan.content += delta.get("content") or ""
            plan.refusal += delta.get("refusal") or ""
            for piece in delta.get("tool_calls") or []:
                call = plan.tool_calls.setdefault(piece["index"], ToolCallPlan())
                call.id = piece.get("id") or call.id
                function = piece.get("function") or {}
                call.name += function.get("name") or ""
                call.arguments += function.get("arguments") or ""
            if choice.get("finish_reason"):
                plan.finish_reason = choice["finish_reason"]
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                plan.logprobs = plan.logprobs or {"content": [], "refusal": []}
                for key in ("content", "refusal"):
                    plan.logprobs[key] += logprobs.get(key) or []
    return Expected(chunks, choices, usage)


def config() -> dict[str, Any]:
    """One OpenAI-compatible provider; the transport never touches the network."""
    return {
        "providers": [
            {
                "id": "up",
                "kind": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": "UP_KEY",
                "timeout": 2,
                "max_retries": 0,
            }
        ],
        "models": [{"id": "gpt-4o-mini", "provider": "up", "context_window": 128000}],
    }


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider key comes from the environment."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)


def serve(raw: bytes) -> PieceTransport:
    """The recorded body served in network reads of ``PIECE`` bytes."""
    return PieceTransport(raw, PIECE, SSE_HEADERS)


def dump(chunk: palyra.ChatCompletionChunk) -> dict[str, Any]:
    """A yielded chunk as the JSON the upstream sent."""
    return chunk.model_dump(mode="json", exclude_unset=True)


def check_completion(
    completion: palyra.ChatCompletion | None, expected: Expected
) -> None:
    """The assembled answer matches what the recorded stream says."""
    assert completion is not None
    first = expected.chunks[0]
    assert completion.id == first["id"]
    assert completion.model == first["model"]
    assert completion.created == first["created"]
    assert completion.system_fingerprint == first.get("system_fingerprint")
    assert [c.index for c in completion.choices] == sorted(expected.choices)
    for choice in completion.choices:
        plan = expected.choices[choice.index]
        message = choice.message
        assert message.content == (plan.content or None)
        assert message.refusal == (plan.refusal or None)
        assert choice.finish_reason == plan.finish_reason
        assert choice.finish_reason is not None
        if plan.tool_calls:
            assert message.tool_calls is not None
            got = [
                (c.id, c.function.name, c.function.arguments)
                for c in message.tool_calls
            ]
            want = [
                (c.id, c.name, c.arguments) for _, c in sorted(plan.tool_calls.items())
            ]
            assert got == want
            for call in message.tool_calls:
                assert call.id.startswith("call_")
                assert call.type == "function"
                assert isinstance(json.loads(call.function.arguments), dict)
        else:
            assert message.tool_calls is None
        if plan.logprobs is not None:
            assert choice.logprobs == plan.logprobs
    assert expected.usage is not None
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        expected.usage["prompt_tokens"],
        expected.usage["completion_tokens"],
        expected.usage["total_tokens"],
    )
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def check_yielded(
    yielded: list[palyra.ChatCompletionChunk], expected: Expected, with_usage: bool
) -> None:
    """The yielded chunks are the recorded ones, minus the usage-only chunk
    unless the caller asked for it."""
    want = [c for c in expected.chunks if c["choices"] or with_usage]
    assert [dump(chunk) for chunk in yielded] == want
    assert len(want) == len(expected.chunks) - (0 if with_usage else 1)
    for index, plan in expected.choices.items():
        text = "".join(
            choice.delta.content or ""
            for chunk in yielded
            for choice in chunk.choices
            if choice.index == index
        )
        assert text == plan.content


def test_every_recorded_file_is_covered() -> None:
    """All twelve recorded OpenAI streams are in the golden set."""
    assert len(FILES) == 12


@pytest.mark.parametrize(
    "with_usage",
    [pytest.param(False, id="default"), pytest.param(True, id="include_usage")],
)
@pytest.mark.parametrize("name", RECORDED)
def test_recorded_stream_sync(name: str, with_usage: bool) -> None:
    """A recorded stream yields its chunks and assembles to what the file says."""
    raw = load_recorded(f"openai/{name}")
    expected = expected_from(raw)
    served = serve(raw)
    options: dict[str, Any] = (
        {"stream_options": {"include_usage": True}} if with_usage else {}
    )
    with (
        palyra.Palyra(
            config(), transport=httpx.MockTransport(served.handler)
        ) as client,
        client.stream(MESSAGES, "gpt-4o-mini", **options) as stream,
    ):
        assert stream.completion is None
        yielded = list(stream)
    check_yielded(yielded, expected, with_usage)
    check_completion(stream.completion, expected)
    # Usage is palyra's own accounting: known whether or not it was yielded.
    assert stream.usage == stream.completion.usage  # type: ignore[union-attr]
    assert stream.palyra.provider == "up"
    assert stream.palyra.model == "gpt-4o-mini"
    assert [a.outcome for a in stream.palyra.attempts] == ["success"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "with_usage",
    [pytest.param(False, id="default"), pytest.param(True, id="include_usage")],
)
@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_stream_async_matches_sync(name: str, with_usage: bool) -> None:
    """`astream` yields exactly what `stream` yields and assembles the same answer."""
    raw = load_recorded(f"openai/{name}")
    expected = expected_from(raw)
    options: dict[str, Any] = (
        {"stream_options": {"include_usage": True}} if with_usage else {}
    )
    sync_served, async_served = serve(raw), serve(raw)
    async with palyra.Palyra(
        config(),
        transport=httpx.MockTransport(sync_served.handler),
        async_transport=httpx.MockTransport(async_served.ahandler),
    ) as client:
        with client.stream(MESSAGES, "gpt-4o-mini", **options) as stream:
            sync_chunks = [dump(chunk) for chunk in stream]
        async with await client.astream(MESSAGES, "gpt-4o-mini", **options) as astream:
            async_yielded = [chunk async for chunk in astream]
    check_yielded(async_yielded, expected, with_usage)
    check_completion(astream.completion, expected)
    assert [dump(chunk) for chunk in async_yielded] == sync_chunks
    assert stream.completion is not None
    assert astream.completion is not None
    assert astream.completion.model_dump(
        exclude={"palyra"}
    ) == stream.completion.model_dump(exclude={"palyra"})
    assert astream.usage == stream.usage
    assert async_served.body() == sync_served.body()


@pytest.mark.parametrize(
    "stream_options",
    [
        pytest.param(None, id="absent"),
        pytest.param({"include_usage": True}, id="include_usage"),
        pytest.param({"include_usage": False}, id="exclude_usage"),
        pytest.param({"include_obfuscation": False}, id="other_option"),
    ],
)
def test_upstream_request_always_asks_for_usage(
    stream_options: dict[str, Any] | None,
) -> None:
    """The upstream body has ``stream: true`` and ``include_usage: true`` always."""
    raw = load_recorded("openai/chat_stream_text_a.sse")
    served = serve(raw)
    options: dict[str, Any] = (
        {"stream_options": stream_options} if stream_options is not None else {}
    )
    with (
        palyra.Palyra(
            config(), transport=httpx.MockTransport(served.handler)
        ) as client,
        client.stream(MESSAGES, "gpt-4o-mini", temperature=0, **options) as stream,
    ):
        yielded = list(stream)
    body = served.body()
    assert body["stream"] is True
    assert body["stream_options"] == {**(stream_options or {}), "include_usage": True}
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0
    request = served.requests[0]
    assert request.url == "http://127.0.0.1:9/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    # The usage-only chunk is forwarded only when the caller asked for it.
    forwarded = bool(stream_options and stream_options.get("include_usage"))
    assert any(not chunk.choices for chunk in yielded) is forwarded
    assert stream.usage is not None
    assert stream.usage.total_tokens > 0


def test_chunks_are_yielded_incrementally() -> None:
    """Each chunk is yielded as soon as its bytes arrive, not at the end of the body."""
    raw = load_recorded("openai/chat_stream_text_long.sse")
    served = serve(raw)
    seen_at: list[int] = []
    with (
        palyra.Palyra(
            config(), transport=httpx.MockTransport(served.handler)
        ) as client,
        client.stream(MESSAGES, "gpt-4o-mini") as stream,
    ):
        for _ in stream:
            seen_at.append(served.sent)
    total = len(served.pieces)
    assert seen_at[0] < total // 10
    assert seen_at == sorted(seen_at)
    assert len(set(seen_at)) > len(seen_at) // 2
    # No chunk waits for more than the read that completes its event.
    events = raw.split(b"\n\n")[:-1]
    ends = []
    offset = 0
    for event in events:
        offset += len(event) + 2
        ends.append(-(-offset // PIECE))
    assert seen_at == [
        end for end, e in zip(ends, events, strict=True) if b'"choices":[{' in e
    ]


@pytest.mark.anyio
async def test_async_chunks_are_yielded_incrementally() -> None:
    """`astream` yields chunks as their bytes arrive from an async body."""
    raw = load_recorded("openai/chat_stream_text_long.sse")
    served = serve(raw)
    seen_at: list[int] = []
    async with (
        palyra.Palyra(
            config(), async_transport=httpx.MockTransport(served.ahandler)
        ) as client,
        await client.astream(MESSAGES, "gpt-4o-mini") as stream,
    ):
        async for _ in stream:
            seen_at.append(served.sent)
    assert seen_at[0] < len(served.pieces) // 10
    assert seen_at == sorted(seen_at)
    assert stream.completion is not None


VARIANTS = [
    pytest.param(lambda raw: raw.replace(b"\n", b"\r\n"), id="crlf"),
    pytest.param(lambda raw: raw.replace(b"\n", b"\r"), id="cr"),
    pytest.param(lambda raw: b"\xef\xbb\xbf" + raw, id="bom"),
    pytest.param(
        lambda raw: b": keep-alive\n\n" + raw.replace(b"\n\n", b"\n\n: ping\n\n"),
        id="comments",
    ),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", RECORDED)
def test_recorded_stream_in_other_framings(
    name: str, variant: Callable[[bytes], bytes]
) -> None:
    """The same stream with other line endings, a BOM or keep-alive comments
    yields the same chunks and answer, and is not reported as interrupted."""
    raw = load_recorded(f"openai/{name}")
    served = serve(variant(raw))
    with (
        palyra.Palyra(
            config(), transport=httpx.MockTransport(served.handler)
        ) as client,
        client.stream(MESSAGES, "gpt-4o-mini") as stream,
    ):
        yielded = list(stream)
    expected = expected_from(raw)
    check_yielded(yielded, expected, with_usage=False)
    check_completion(stream.completion, expected)
