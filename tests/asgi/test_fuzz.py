"""Malformed requests, generated (issue 13): for every route, bodies of any
JSON shape, near-valid requests with one field broken, and raw bytes. None is
answered with a 500, none hangs, and every refusal is in its dialect's
envelope."""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import palyra
from palyra.asgi import create_app

HOME = tempfile.mkdtemp(prefix="palyra-fuzz-")
CLIENT = palyra.Palyra(home=HOME, ledger=False)
SECRET = CLIENT.tokens.create("fuzz")[1]
APP = create_app(CLIENT, max_body_bytes=64 * 1024)
ROUTES = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
VALID = {
    "/v1/chat/completions": {
        "model": "deterministic-chat",
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/embeddings": {"model": "deterministic-embeddings", "input": "hi"},
    "/v1/messages": {
        "model": "deterministic-chat",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/messages/count_tokens": {
        "model": "deterministic-chat",
        "messages": [{"role": "user", "content": "hi"}],
    },
}


async def _send(path: str, content: bytes, headers: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://fuzz") as http:
        return await asyncio.wait_for(
            http.post(path, content=content, headers=headers), timeout=5
        )


def check(path: str, content: bytes, headers: dict[str, Any] | None = None) -> None:
    sent = {"authorization": f"Bearer {SECRET}", "content-type": "application/json"}
    response = asyncio.run(_send(path, content, {**sent, **(headers or {})}))
    assert response.status_code < 500 or response.status_code in (502, 503, 504), (
        response.text
    )
    if response.status_code >= 400:
        data = response.json()
        if path.startswith("/v1/messages"):
            assert data["type"] == "error"
        else:
            assert set(data["error"]) == {"message", "type", "param", "code"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(ROUTES), body=json_values)
def test_any_json_body(path: str, body: Any) -> None:
    check(path, json.dumps(body).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(ROUTES), data=st.data())
def test_a_valid_request_with_one_field_broken(path: str, data: st.DataObject) -> None:
    body = dict(VALID[path])
    name = data.draw(
        st.sampled_from([*body, "stream", "tools", "temperature", "system", "n"])
    )
    body[name] = data.draw(json_values)
    check(path, json.dumps(body).encode())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(ROUTES), raw=st.binary(max_size=200))
def test_raw_bytes(path: str, raw: bytes) -> None:
    check(path, raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(ROUTES),
    agent=st.text(max_size=30),
    tags=st.text(max_size=30),
)
def test_odd_caller_headers(path: str, agent: str, tags: str) -> None:
    safe = {
        "x-palyra-agent": agent.encode("latin-1", "replace").decode("latin-1"),
        "x-palyra-tags": tags.encode("latin-1", "replace").decode("latin-1"),
    }
    raw = {
        k: v.replace("\r", "").replace("\n", "").encode("latin-1")
        for k, v in safe.items()
    }
    check(path, json.dumps(VALID[path]).encode(), raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    boundary=st.sampled_from(["B", "xyz", ""]),
    pieces=st.lists(
        st.sampled_from(
            [
                b"--B\r\n",
                b"--B--\r\n",
                b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n',
                b'Content-Disposition: form-data; name="model"\r\n',
                b"Content-Disposition: form-data\r\n",
                b"\r\n",
                b"deterministic-chat",
                b"\xff\xfe",
            ]
        )
        | st.binary(max_size=30),
        max_size=12,
    ),
)
def test_broken_multipart_uploads(boundary: str, pieces: list[bytes]) -> None:
    kind = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    check("/v1/audio/transcriptions", b"".join(pieces), {"content-type": kind})
