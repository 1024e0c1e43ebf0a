"""Bad caller input: every row is a typed error naming the argument, raised before
anything is sent, sync and async, for chat and stream, on both dialects."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import palyra
from tests.helpers import DRIVERS, OPS, close, start_stream

USER = [{"role": "user", "content": "hi"}]
THINKING = {"type": "enabled", "budget_tokens": 2000}


def _nested(depth: int) -> Any:
    content: Any = "deep"
    for _ in range(depth):
        content = [content]
    return content


# (messages or None for USER, options, what the message must name)
ROWS = [
    pytest.param(
        None, {"tools": [1]}, r"tools\[0\]: must be a mapping", id="tools-int"
    ),
    pytest.param(None, {"tools": "abc"}, "tools: must be a list", id="tools-str"),
    pytest.param(None, {"tools": {"a": 1}}, "tools: must be a list", id="tools-dict"),
    pytest.param(
        None,
        {"tools": [{"type": "function", "function": None}]},
        r"tools\[0\]\.function: required",
        id="tools-function-none",
    ),
    pytest.param(
        None,
        {"tools": [{"type": "function", "function": {"name": ""}}]},
        r"tools\[0\]\.function\.name",
        id="tools-nameless",
    ),
    pytest.param(
        "none", {}, "messages: must be a list of message dicts", id="messages-none"
    ),
    pytest.param(
        "hello", {}, "messages: must be a list of message dicts", id="messages-str"
    ),
    pytest.param(
        {"role": "user", "content": "hi"},
        {},
        "messages: must be a list of message dicts, e.g.",
        id="messages-dict",
    ),
    pytest.param(
        [{"role": ["user"], "content": "hi"}], {}, r"messages\[0\]\.role", id="role"
    ),
    pytest.param(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "x": _nested(5000)}],
            }
        ],
        {},
        "nested more than 64 levels",
        id="deep-content",
    ),
    pytest.param(None, {"extra_body": [1]}, "extra_body: must be a mapping", id="eb"),
    pytest.param(
        None, {"extra_body": {"a": _nested(5000)}}, "extra_body: nested", id="eb-deep"
    ),
    pytest.param(
        None,
        {"extra_headers": {"x": 1}},
        "extra_headers: header names and values are strings",
        id="header-int",
    ),
    pytest.param(
        None,
        {"extra_headers": {"x-trace": "caf\u00e9"}},
        "extra_headers: header 'x-trace' has a value that is not visible ASCII",
        id="header-non-ascii",
    ),
    pytest.param(
        None,
        {"extra_headers": {"x-trace": "abc\r\n"}},
        "extra_headers: header 'x-trace' has a value that is not visible ASCII",
        id="header-crlf",
    ),
    pytest.param(
        None,
        {"extra_headers": {"bad name": "v"}},
        "not a valid header name",
        id="header-name",
    ),
    pytest.param(
        None,
        {"extra_headers": {"x-api-key": "k"}},
        "carries credentials",
        id="header-credential",
    ),
    pytest.param(None, {"timeout": math.nan}, "timeout: must be a positive", id="t"),
    pytest.param(None, {"deadline": math.nan}, "deadline: must be a positive", id="d"),
    pytest.param(None, {"deadline": math.inf}, "deadline: must be a positive", id="di"),
    pytest.param(
        None, {"temperature": math.nan}, "temperature: must be a finite", id="temp-nan"
    ),
    pytest.param(
        None, {"temperature": math.inf}, "temperature: must be a finite", id="temp-inf"
    ),
    pytest.param(None, {"top_p": "high"}, "top_p: must be a number", id="top-p"),
    pytest.param(None, {"metadata": "x"}, "metadata: must be a mapping", id="meta"),
    pytest.param(None, {"stop": 5}, "stop: must be a string or a list", id="stop"),
    pytest.param(None, {"seed": 1.5}, "seed: must be an integer", id="seed"),
    pytest.param(
        None,
        {"extra_body": {"stream": True}},
        r"stream is set by palyra; call client\.stream\(\)",
        id="eb-stream",
    ),
    pytest.param(
        None,
        {"extra_body": {"stream_options": None}},
        r"stream_options is set by palyra; pass stream_options=",
        id="eb-stream-options",
    ),
]


class Dumps:
    """Has a ``model_dump`` that is not a method."""

    model_dump = 5


HUGE = 10**5000  # too long for str(): no message may try to show it
CALL = {"id": "call_1", "type": "function"}
WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def _assistant(**fields: Any) -> list[dict[str, Any]]:
    return [*USER, {"role": "assistant", "content": "ok", **fields}]


# Found by the property test (tests/test_properties.py), one row each.
PROPERTY_ROWS = [
    pytest.param(
        None, {"temperature": HUGE}, "temperature: must be a finite number, got an int"
    ),
    pytest.param(None, {"timeout": HUGE}, "timeout: must be a positive number"),
    pytest.param(None, {"deadline": -HUGE}, "deadline: must be a positive number"),
    pytest.param(
        None, {"max_tokens": 2**64}, "max_tokens: must be a positive integer that fits"
    ),
    pytest.param(None, {"seed": -(2**70)}, "seed: must be an integer that fits in 64"),
    pytest.param(
        [{"role": HUGE, "content": "hi"}], {}, r"messages\[0\]\.role: .*got an int of"
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": HUGE}]}],
        {},
        "unsupported content part an int of",
    ),
    pytest.param([Dumps()], {}, r"messages\[0\]: must be a message dict, got Dumps"),
    pytest.param(
        [*USER, {"role": "tool", "tool_call_id": ["call_1"], "content": "x"}],
        {},
        r"messages\[1\]\.tool_call_id: required for tool messages \(a string\)",
    ),
    pytest.param(
        _assistant(tool_calls=5), {}, r"messages\[1\]\.tool_calls: must be a list"
    ),
    pytest.param(
        _assistant(tool_calls=[5]), {}, r"tool_calls\[0\]: must be a mapping, got 5"
    ),
    pytest.param(
        _assistant(tool_calls=[{**CALL, "function": 5}]),
        {},
        r"tool_calls\[0\]\.function: must be a mapping",
    ),
    pytest.param(
        _assistant(tool_calls=[{**CALL, "function": {"arguments": "{}"}}]),
        {},
        r"tool_calls\[0\]\.function\.name: must be a non-empty string",
    ),
    pytest.param(
        _assistant(tool_calls=[{**CALL, "function": {"name": "f", "arguments": 5}}]),
        {},
        r"tool_calls\[0\]\.function\.arguments: must be JSON text",
    ),
    pytest.param(
        None,
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": 5}},
        "tool_choice.function: must be a mapping",
    ),
    pytest.param(
        None,
        {"response_format": {"type": "json_schema", "json_schema": 5}},
        "response_format.json_schema: must be a mapping, got 5",
    ),
    pytest.param(
        None,
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {1}}}},
        "response_format.json_schema.schema: must be a JSON schema, got set",
    ),
    pytest.param(None, {"tags": {HUGE: "x"}}, "tags: keys must be .* got an int of"),
]


def _messages(messages: Any) -> Any:
    if messages is None:
        return USER
    return None if messages == "none" else messages


class Recorder:
    """A MockTransport that records every request (none may arrive)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(500)


def _config(kind: str) -> dict[str, Any]:
    model = "claude-sonnet-4-5" if kind == "anthropic" else "gpt-4o-mini"
    return {
        "providers": [
            {
                "id": "up",
                "kind": kind,
                "base_url": "https://api.example.com/v1",
                "api_key_env": "UP_KEY",
            }
        ],
        "models": [{"id": model, "provider": "up"}],
    }


@pytest.fixture(name="recorder")
def recorder_fixture() -> Recorder:
    return Recorder()


def _client(kind: str, recorder: Recorder) -> palyra.Palyra:
    transports: dict[str, Any] = {
        "transport": recorder.transport,
        "async_transport": recorder.transport,
    }
    return palyra.Palyra(_config(kind), **transports)


@pytest.fixture(name="client", params=["openai", "anthropic"])
def client_fixture(
    request: pytest.FixtureRequest,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[palyra.Palyra]:
    monkeypatch.setenv("UP_KEY", "sk-test-0123456789abcdef")
    with _client(request.param, recorder) as client:
        yield client


async def _call(
    client: palyra.Palyra, driver: str, op: str, messages: Any, **options: Any
) -> None:
    if op == "stream":
        await close(await start_stream(client, driver, messages, **options))
    elif driver == "sync":
        client.chat(messages, **options)
    else:
        await client.achat(messages, **options)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("messages", "options", "message"), ROWS + PROPERTY_ROWS)
async def test_bad_input_is_named_before_any_send(
    client: palyra.Palyra,
    recorder: Recorder,
    driver: str,
    op: str,
    messages: Any,
    options: dict[str, Any],
    message: str,
) -> None:
    """Each bad input of the adversarial pass raises InvalidRequestError naming
    the argument, and no request leaves."""
    with pytest.raises(palyra.InvalidRequestError, match=message):
        await _call(client, driver, op, _messages(messages), **options)
    assert recorder.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_options_must_be_a_mapping_and_only_on_streams(
    client: palyra.Palyra, recorder: Recorder, driver: str
) -> None:
    with pytest.raises(palyra.InvalidRequestError, match="stream_options: must be"):
        await _call(client, driver, "stream", USER, stream_options="x")
    with pytest.raises(palyra.InvalidRequestError, match="stream_options: only for"):
        await _call(client, driver, "chat", USER, stream_options={})
    assert recorder.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("op", OPS)
async def test_model_must_be_a_string(
    client: palyra.Palyra, driver: str, op: str
) -> None:
    with pytest.raises(palyra.InvalidRequestError, match="model: must be a model id"):
        await _call(client, driver, op, USER, model=["x"])


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_stream_as_a_chat_option_points_to_stream(
    client: palyra.Palyra, driver: str
) -> None:
    with pytest.raises(TypeError, match=r"client\.stream\(\)"):
        await _call(client, driver, "chat", USER, stream=True)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"tools": [{}]}, r"tools\[0\].function: required", id="empty"),
        pytest.param(
            {"tools": [{"type": "web_search"}]},
            r"tools\[0\]: anthropic takes function tools",
            id="other-type",
        ),
        pytest.param(
            {"extra_body": {"thinking": {"type": "enabled", "budget_tokens": "lots"}}},
            "thinking.budget_tokens: must be a positive integer",
            id="budget",
        ),
        pytest.param(
            {"extra_body": {"thinking": THINKING, "top_p": "high"}},
            "extra_body.top_p: must be a number, got str",
            id="thinking-top-p",
        ),
        pytest.param(
            {"extra_body": {"thinking": THINKING, "max_tokens": "many"}},
            "extra_body.max_tokens: must be a number, got str",
            id="thinking-max-tokens",
        ),
        pytest.param(
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"minimum": math.nan}},
                }
            },
            "response_format.json_schema.schema: must be JSON",
            id="schema-nan",
        ),
    ],
)
async def test_anthropic_specific_input(
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    driver: str,
    options: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.setenv("UP_KEY", "sk-ant-test-0123456789")
    with (
        _client("anthropic", recorder) as client,
        pytest.raises(palyra.InvalidRequestError, match=message),
    ):
        await _call(client, driver, "chat", USER, **options)
    assert recorder.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_anthropic_thinking_blocks_must_be_blocks(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    monkeypatch.setenv("UP_KEY", "sk-ant-test-0123456789")
    with (
        _client("anthropic", recorder) as client,
        pytest.raises(
            palyra.InvalidRequestError,
            match=r"messages\[1\]\.thinking_blocks: must be a list of the thinking",
        ),
    ):
        await _call(client, driver, "chat", _assistant(thinking_blocks=5))
    assert recorder.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("op", OPS)
async def test_calls_after_close_raise_client_closed(driver: str, op: str) -> None:
    """Deterministic calls too: closed means closed, with a typed error."""
    client = palyra.Palyra()
    await _call(client, driver, op, USER)
    if driver == "sync":
        client.close()
    else:
        await client.aclose()
    with pytest.raises(palyra.ClientClosedError, match="client is closed"):
        await _call(client, driver, op, USER)
    assert issubclass(palyra.ClientClosedError, RuntimeError)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({"Content-Length": "5"}, "set by palyra's HTTP client", id="cl"),
        pytest.param({"X-Trace": "a\r\nb"}, "not visible ASCII on one line", id="crlf"),
        pytest.param({"X Trace": "a"}, "not a valid header name", id="name"),
        pytest.param({"Authorization": "Bearer x"}, "carries credentials", id="auth"),
    ],
)
def test_config_headers_are_checked(headers: dict[str, str], message: str) -> None:
    config = _config("openai")
    config["providers"][0]["headers"] = headers
    with pytest.raises(palyra.ConfigError, match=message):
        palyra.PalyraConfig.from_dict(config)


def test_unknown_model_lists_what_exists() -> None:
    """Up to 20 names of the role are listed; past that, the nearest ones."""
    with (
        palyra.Palyra() as client,
        pytest.raises(palyra.ModelNotFoundError) as info,
    ):
        client.chat(USER, "gpt-4o")
    assert str(info.value) == (
        "unknown model 'gpt-4o'; configured chat models: deterministic-chat"
        " (model=gpt-4o)"
    )
    many = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [{"id": f"model-{i:02d}", "provider": "local"} for i in range(30)]
        + [{"id": "e", "provider": "local", "role": "embeddings"}],
    }
    with (
        palyra.Palyra(many) as client,
        pytest.raises(palyra.ModelNotFoundError) as info,
    ):
        client.chat(USER, "model-7")
    _head, listed = str(info.value).split("30 chat models are configured, e.g. ")
    names = listed.removesuffix(" (model=model-7)").split(", ")
    assert "model-07" in names
    assert len(names) <= 5


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("op", OPS)
async def test_the_deterministic_provider_refuses_n_above_one(
    driver: str, op: str
) -> None:
    """It answers one choice; a reply with fewer choices than asked would lie."""
    with palyra.Palyra() as client:
        with pytest.raises(palyra.UnsupportedCapabilityError) as refused:
            await _call(client, driver, op, USER, n=3)
        assert refused.value.capability == "n > 1"
        assert client.deterministic().history == []  # refused before sending
        await _call(client, driver, op, USER, n=1)
        assert len(client.deterministic().history) == 1
