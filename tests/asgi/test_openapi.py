"""``/openapi.json`` (issue 13): the document is valid JSON Schema throughout,
describes every route the app serves, and a fuzzer drawing requests from it
(`tests/asgi/schemas.py`) finds no answer the document does not list: every
status is one the operation documents, every JSON answer matches its
documented schema, none is a 500 and none takes past the deadline."""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import palyra
from palyra.asgi import create_app
from palyra.asgi._app import _ROUTES
from palyra.asgi._openapi import openapi_document
from tests.asgi.schemas import breaking, valid

HOME = tempfile.mkdtemp(prefix="palyra-openapi-")
CLIENT = palyra.Palyra(
    {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {"id": "chat", "provider": "local", "capabilities": {"vision": True}},
            {"id": "emb", "provider": "local", "role": "embeddings", "dimensions": 4},
            {"id": "ears", "provider": "local", "role": "audio_transcription"},
        ],
    },
    home=HOME,
    ledger=False,
)
SECRET = CLIENT.tokens.create("fuzz")[1]
APP = create_app(CLIENT, max_body_bytes=64 * 1024)
DOC = openapi_document("", tuple(sorted(CLIENT.config.routing.hints)))
MODELS = {"/v1/embeddings": "emb", "/v1/audio/transcriptions": "ears"}
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def resolved(schema: Any) -> Any:
    """The schema with every local ``$ref`` replaced by what it names."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return resolved(DOC["components"]["schemas"][name])
        return {k: resolved(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [resolved(item) for item in schema]
    return schema


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in DOC["paths"].items()
        for method, op in item.items()
    ]


def test_every_schema_is_valid_json_schema_and_every_ref_resolves() -> None:
    for schema in DOC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(resolved(schema))
    text = json.dumps(DOC)
    for name in DOC["components"]["schemas"]:
        assert f'"#/components/schemas/{name}"' in text or name == "ChatMessage"
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["version"] == palyra.__version__


def test_every_served_route_is_documented() -> None:
    documented = {(p, m.upper()) for p, m, _ in operations()}
    served = {(path, method) for path, (method, _, _) in _ROUTES.items()}
    assert served | {("/v1/models/{model}", "GET")} == documented


@pytest.mark.anyio
async def test_it_is_served_without_a_token_and_names_its_mount() -> None:
    transport = httpx.ASGITransport(app=APP, root_path="/llm")
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        answer = await http.get("/llm/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["servers"] == [{"url": "/llm"}]
    assert answer.json()["paths"] == json.loads(json.dumps(DOC["paths"]))


def _request(path: str, op: dict[str, Any], body: Any) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {SECRET}"}
    if "multipart/form-data" in op["requestBody"]["content"]:
        fields = {k: str(v) for k, v in body.items() if k != "file"}
        upload = str(body.get("file", "")).encode()
        files = {"file": ("clip.wav", upload)} if "file" in body else {"x": ("x", b"")}
        return {"data": fields, "files": files, "headers": headers}
    return {"content": json.dumps(body).encode(), "headers": headers}


async def _send(path: str, sent: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://fuzz") as http:
        return await asyncio.wait_for(http.post(path, **sent), timeout=5)


def conforms(path: str, op: dict[str, Any], response: httpx.Response) -> None:
    """The answer is one the document lists, in the shape it gives."""
    status = str(response.status_code)
    assert response.status_code != 500, response.text
    assert status in op["responses"], (status, response.text)
    kind = response.headers["content-type"].split(";")[0]
    documented = op["responses"][status]["content"]
    assert kind in documented, (status, kind)
    if kind == "application/json":
        schema = resolved(documented[kind]["schema"])
        jsonschema.validate(response.json(), schema)


POSTS = [(p, op) for p, m, op in operations() if m == "post"]


def _body_schema(op: dict[str, Any]) -> Any:
    content = op["requestBody"]["content"]
    return resolved(next(iter(content.values()))["schema"])


@pytest.mark.parametrize(("path", "op"), POSTS, ids=[p for p, _ in POSTS])
@SETTINGS
@given(data=st.data())
def test_requests_drawn_from_the_document_get_documented_answers(
    path: str, op: dict[str, Any], data: st.DataObject
) -> None:
    body = data.draw(valid(_body_schema(op)), label="body")
    exists = data.draw(st.booleans(), label="a model that exists")
    if exists:
        body["model"] = MODELS.get(path, "chat")
    body.pop("stream", None)  # streams are SSE, checked in the route tests
    body.pop("stream_options", None)  # only with a stream, the document says
    response = asyncio.run(_send(path, _request(path, op, body)))
    conforms(path, op, response)
    if exists and response.status_code != 200:
        # a body the document accepts is one palyra serves, unless this model
        # lacks what it asks for (n > 1, audio input): a 400 that says so
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "unsupported_capability"


@pytest.mark.parametrize(("path", "op"), POSTS, ids=[p for p, _ in POSTS])
@SETTINGS
@given(data=st.data())
def test_requests_that_break_the_document_are_refused_as_documented(
    path: str, op: dict[str, Any], data: st.DataObject
) -> None:
    schema = _body_schema(op)
    body = data.draw(valid(schema), label="valid body")
    name = data.draw(st.sampled_from(sorted(schema["properties"])), label="field")
    wrong = data.draw(
        breaking(schema["properties"][name]).filter(lambda v: v is not None),
        label="wrong value",  # null is absent, as the document says
    )
    body[name] = wrong
    if name != "stream":
        body.pop("stream", None)
    response = asyncio.run(_send(path, _request(path, op, body)))
    conforms(path, op, response)
    if "multipart/form-data" not in op["requestBody"]["content"]:
        assert response.status_code >= 400, (name, wrong)
