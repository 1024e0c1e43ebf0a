"""The OpenAI-shaped routes: chat completions (JSON and SSE), embeddings
(float and base64) and models. Each request is one call of the async client,
so routing, failover, budgets and the ledger apply as they do in-process."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

from .._client import Palyra
from .._request import ChatOptions, RequestOptions
from ._errors import Problem, problem_of
from ._http import Exchange, upstream_headers

__all__ = ["chat", "embeddings", "model", "models"]

_CLIENT_SIDE = frozenset(RequestOptions.__annotations__)  # never from a body
_OPTIONS = frozenset(ChatOptions.__annotations__) - _CLIENT_SIDE
_ROLES = {"chat": "chat", "embeddings": "embeddings", "audio": "audio_transcription"}
_EXCLUDE = {"palyra"}


def _field(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str
) -> Any:
    value = data.pop(name, None)
    if (
        value is None
        or not isinstance(value, kind)
        or (isinstance(value, bool) and kind is not bool)
    ):
        raise Problem(400, f"{name}: must be {what}", param=name, code="invalid_value")
    return value


def _principal(data: dict[str, Any], caller: dict[str, Any]) -> None:
    """``user`` or ``safety_identifier`` (kept in the request) name the
    principal, unless the caller's token already did."""
    for name in ("safety_identifier", "user"):
        value = data.get(name)
        if isinstance(value, str) and value and "principal" not in caller:
            caller["principal"] = value


def _chat_options(data: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in data.items():
        if name in _CLIENT_SIDE:
            raise Problem(400, f"{name}: is not a request field", param=name)
        (options if name in _OPTIONS else extra)[name] = value
    if extra:
        options["extra_body"] = extra  # fields palyra does not know go upstream
    return options


async def chat(
    ex: Exchange, client: Palyra, data: dict[str, Any], caller: dict[str, Any]
) -> None:
    """``POST /v1/chat/completions``."""
    model = _field(data, "model", str, "a model id or alias")
    messages = _field(data, "messages", list, "a list of messages")
    stream = data.pop("stream", False)
    if not isinstance(stream, bool):
        raise Problem(400, "stream: must be true or false", param="stream")
    _principal(data, caller)
    options = _chat_options(data)
    if not stream:
        reply = await client.achat(messages, model, **caller, **options)
        body = reply.model_dump_json(exclude=_EXCLUDE).encode()
        await ex.answer(
            200,
            body,
            [(k.encode(), v.encode()) for k, v in upstream_headers(reply).items()],
        )
        return
    opened = await client.astream(messages, model, **caller, **options)
    await _events(ex, opened)


async def _events(ex: Exchange, stream: Any) -> None:
    """Chunks as SSE, ``data: [DONE]`` last; a failure mid-way is an error
    event and no ``[DONE]``; a caller who leaves closes the upstream call."""
    gone = asyncio.ensure_future(ex.until_disconnect())
    try:
        await ex.start_events()
        async for chunk in stream:
            if gone.done():
                return  # the finally closes the stream: recorded as cancelled
            await ex.write(
                b"data: " + chunk.model_dump_json(exclude=_EXCLUDE).encode() + b"\n\n"
            )
        await ex.write(b"data: [DONE]\n\n", more=False)
    except Exception as exc:  # mid-stream: the head is out, an event says it
        problem = problem_of(exc, ex.scope.get("palyra.request_id", ""))
        payload = json.dumps(problem.body(), separators=(",", ":")).encode()
        await ex.write(b"data: " + payload + b"\n\n", more=False)
    finally:
        gone.cancel()
        await stream.aclose()


async def embeddings(
    ex: Exchange, client: Palyra, data: dict[str, Any], caller: dict[str, Any]
) -> None:
    """``POST /v1/embeddings``."""
    model = _field(data, "model", str, "a model id or alias")
    inputs = data.pop("input", None)
    if isinstance(inputs, list) and not all(isinstance(i, str) for i in inputs):
        raise Problem(
            400, "input: token arrays are not supported; send text", param="input"
        )
    if not isinstance(inputs, str | list):
        raise Problem(
            400, "input: must be a string or a list of strings", param="input"
        )
    encoding = data.pop("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise Problem(
            400, "encoding_format: must be float or base64", param="encoding_format"
        )
    dimensions = data.pop("dimensions", None)
    _principal(data, caller)
    data.pop("user", None)
    data.pop("safety_identifier", None)
    extra = {k: v for k, v in data.items() if k not in _CLIENT_SIDE}
    options: dict[str, Any] = dict(caller)
    if extra:
        options["extra_body"] = extra
    reply = await client.aembed(inputs, model, dimensions=dimensions, **options)
    body = reply.model_dump(exclude=_EXCLUDE)
    if encoding == "base64":
        for item in body["data"]:
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(
                struct.pack(f"<{len(vector)}f", *vector)
            ).decode()
    await ex.answer_json(200, body, upstream_headers(reply))


def _listed(client: Palyra, scopes: tuple[str, ...] | None) -> list[dict[str, Any]]:
    roles = {_ROLES[s] for s in (scopes or _ROLES) if s in _ROLES}
    return [
        {"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}
        for m in client.models()
        if m.enabled and m.role in roles
    ]


async def models(ex: Exchange, client: Palyra, scopes: tuple[str, ...] | None) -> None:
    """``GET /v1/models``: the registry models the token may call."""
    await ex.answer_json(200, {"object": "list", "data": _listed(client, scopes)})


async def model(
    ex: Exchange, client: Palyra, scopes: tuple[str, ...] | None, name: str
) -> None:
    """``GET /v1/models/{id}``."""
    for found in _listed(client, scopes):
        if found["id"] == name:
            await ex.answer_json(200, found)
            return
    raise Problem(
        404, f"the model {name!r} does not exist", code="model_not_found", param="model"
    )
