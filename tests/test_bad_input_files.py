"""Bad input to ``embed`` and ``transcribe``, and bodies the in-process mocks
cannot read: each row is one the property test (tests/test_properties.py)
found raising a bare exception."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import httpx
import pytest

import palyra
from palyra.testing import OpenAIMock
from tests.helpers import DRIVERS

HUGE = 10**5000


async def _embed(driver: str, inputs: Any, **options: Any) -> None:
    with palyra.Palyra() as client:
        if driver == "sync":
            client.embed(inputs, **options)
        else:
            await client.aembed(inputs, **options)


async def _transcribe(driver: str, file: Any, **options: Any) -> None:
    with palyra.Palyra() as client:
        if driver == "sync":
            client.transcribe(file, **options)
        else:
            await client.atranscribe(file, **options)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("inputs", "options", "message"),
    [
        pytest.param(5, {}, "input: must be a string or a list of strings, got 5"),
        pytest.param(b"hi", {}, "input: must be a string or a list of strings"),
        pytest.param({"a": "b"}, {}, "input: must be a string or a list of strings"),
        pytest.param("hi", {"dimensions": 10**6}, "dimensions: must be a positive"),
        pytest.param("hi", {"dimensions": True}, "dimensions: must be a positive"),
        pytest.param("hi", {"dimensions": HUGE}, "up to 65536, got an int of"),
        pytest.param("hi", {"timeout": HUGE}, "timeout: must be a positive number"),
    ],
)
async def test_bad_embed_input(
    driver: str, inputs: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(palyra.InvalidRequestError, match=message):
        await _embed(driver, inputs, **options)


SHAPE = r"file: must be a path, bytes, a binary file object or \(filename, bytes\)"


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("file", "options", "message"),
    [
        pytest.param(("a.wav", None), {}, f"{SHAPE}; got NoneType", id="tuple-none"),
        pytest.param((), {}, f"{SHAPE}; got another tuple", id="tuple-empty"),
        pytest.param((5, b"x"), {}, f"{SHAPE}; got another tuple", id="tuple-name"),
        pytest.param(5, {}, f"{SHAPE}; got int", id="int"),
        pytest.param(io.StringIO("x"), {}, f"{SHAPE}; got a text file", id="text"),
        pytest.param("a\x00b.wav", {}, "file: not a valid path", id="nul-path"),
        pytest.param(
            ("\ud800.wav", b"x"), {}, "file: must be valid Unicode", id="name"
        ),
        pytest.param(b"x", {"prompt": "\ud800"}, "prompt: must be valid Unicode text"),
        pytest.param(b"x", {"language": 5}, "language: must be a string, got 5"),
        pytest.param(b"x", {"temperature": math.nan}, "temperature: must be a finite"),
        pytest.param(
            b"x",
            {"extra_body": {("a",): 1}},
            "extra_body: form field names are strings, got tuple",
        ),
        pytest.param(
            b"x",
            {"extra_body": {"x": {"a": 1}}},
            "extra_body.x: must be text, a number or a list of them, got dict",
        ),
        pytest.param(b"x", {"extra_body": {"x": None}}, "extra_body.x: must be text"),
        pytest.param(b"x", {"extra_body": {"x": [HUGE]}}, "extra_body.x: .*64 bits"),
        pytest.param(b"x", {"extra_body": {"x": "\udfff"}}, "extra_body.x: .*Unicode"),
    ],
)
async def test_bad_transcribe_input(
    driver: str, file: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(palyra.InvalidRequestError, match=message):
        await _transcribe(driver, file, **options)


def _post(mock: OpenAIMock, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(transport=mock.transport) as http:
        return http.post(f"https://api.openai.com/v1{path}", **kwargs)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"model": "m", "input": "hi", "dimensions": 10**30}, id="huge"),
        pytest.param({"model": "m", "input": "hi", "dimensions": "8"}, id="str"),
        pytest.param({"model": "m", "input": "hi", "dimensions": -3}, id="negative"),
        pytest.param({"model": "m", "input": 5}, id="input"),
    ],
)
def test_mock_refuses_embeddings_it_cannot_make(body: dict[str, Any]) -> None:
    """extra_body can send anything: the mock answers 400, it does not raise."""
    response = _post(OpenAIMock(), "/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"tools": 5}, id="tools"),
        pytest.param({"tools": [5]}, id="tool"),
        pytest.param({"stop": 5}, id="stop"),
        pytest.param({"messages": 5}, id="messages"),
    ],
)
def test_mock_refuses_chat_bodies_it_cannot_read(fields: dict[str, Any]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    response = _post(OpenAIMock(), "/chat/completions", json=body)
    assert response.status_code == 400


def test_mock_transcribes_a_file_without_a_filename() -> None:
    """The file part is the one named ``file``, filename or not; fields that are
    not UTF-8 are read with replacement characters."""
    response = _post(
        OpenAIMock(),
        "/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("", b"\xd8\x00")},
    )
    assert response.status_code == 200
    assert json.loads(response.content) == {"text": "[2 bytes of audio]"}
