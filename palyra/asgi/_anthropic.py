"""The Anthropic-shaped routes: ``POST /v1/messages`` (a ``message``, or its
named event stream) and ``POST /v1/messages/count_tokens``, for any registry
model, and errors in Anthropic's envelope."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .._client import Palyra
from ._anthropic_shape import STOP_REASONS, message_of, openai_messages, options_of
from ._errors import Problem, problem_of
from ._http import Exchange, upstream_headers

__all__ = ["count_tokens", "error_body", "messages"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_body(problem: Problem) -> dict[str, Any]:
    """Anthropic's envelope for a refused request."""
    kind = _TYPES.get(problem.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": problem.message}}


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise Problem(400, "model: must be a model id or alias", param="model")
    return model


def _caller(data: dict[str, Any], caller: dict[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user, str) and user and "principal" not in caller:
        caller = {**caller, "principal": user}
    return caller


async def messages(
    ex: Exchange, client: Palyra, data: dict[str, Any], caller: dict[str, Any]
) -> None:
    """``POST /v1/messages``."""
    model = _model(data)
    turns = openai_messages(data)
    options = options_of(data)
    who = _caller(data, caller)
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise Problem(400, "stream: must be true or false", param="stream")
    if not stream:
        reply = await client.achat(turns, model, **who, **options)
        await ex.answer_json(200, message_of(reply, model), upstream_headers(reply))
        return
    opened = await client.astream(
        turns, model, stream_options={"include_usage": True}, **who, **options
    )
    await _events(ex, opened, model)


def _event(name: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({"type": name, **data}, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


class _Blocks:
    """Content blocks opened and closed as the chunks of an answer arrive."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None
        self.tools: dict[int, int] = {}  # OpenAI tool index -> block index

    def open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self.close()
        self.index += 1
        self.kind = kind
        out.append(
            _event("content_block_start", {"index": self.index, "content_block": block})
        )
        if self.index == 0:
            out.append(_event("ping", {}))
        return out

    def close(self) -> list[bytes]:
        if self.kind is None:
            return []
        self.kind = None
        return [_event("content_block_stop", {"index": self.index})]


def _pieces(chunk: Any, blocks: _Blocks) -> list[bytes]:
    out: list[bytes] = []
    for choice in chunk.choices:
        delta = choice.delta
        if delta.content:
            if blocks.kind != "text":
                out += blocks.open("text", {"type": "text", "text": ""})
            out.append(
                _event(
                    "content_block_delta",
                    {
                        "index": blocks.index,
                        "delta": {"type": "text_delta", "text": delta.content},
                    },
                )
            )
        for call in delta.tool_calls or []:
            if call.index not in blocks.tools:
                name = call.function.name if call.function else ""
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call.id or "",
                    "name": name or "",
                    "input": {},
                }
                out += blocks.open("tool", block)
                blocks.tools[call.index] = blocks.index
            piece = call.function.arguments if call.function else None
            if piece:
                out.append(
                    _event(
                        "content_block_delta",
                        {
                            "index": blocks.tools[call.index],
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": piece,
                            },
                        },
                    )
                )
    return out


async def _events(ex: Exchange, stream: Any, model: str) -> None:
    """The answer as Anthropic's named events; a failure mid-way is an
    ``error`` event; a caller who leaves closes the upstream call."""
    gone = asyncio.ensure_future(ex.until_disconnect())
    blocks = _Blocks()
    stop, output = "end_turn", 0
    try:
        await ex.start_events()
        estimate = stream.palyra.token_estimate
        head = {
            "id": "msg_" + ex.scope.get("palyra.request_id", "").removeprefix("req_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": estimate.prompt_tokens if estimate else 0,
                "output_tokens": 1,
            },
        }
        await ex.write(_event("message_start", {"message": head}))
        async for chunk in stream:
            if gone.done():
                return
            for piece in _pieces(chunk, blocks):
                await ex.write(piece)
            for choice in chunk.choices:
                if choice.finish_reason:
                    stop = STOP_REASONS.get(choice.finish_reason, "end_turn")
            if chunk.usage is not None:
                output = chunk.usage.completion_tokens
        for piece in blocks.close():
            await ex.write(piece)
        delta = {
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": output},
        }
        await ex.write(_event("message_delta", delta))
        await ex.write(_event("message_stop", {}), more=False)
    except Exception as exc:
        problem = problem_of(exc, ex.scope.get("palyra.request_id", ""))
        await ex.write(
            _event("error", {"error": error_body(problem)["error"]}), more=False
        )
    finally:
        gone.cancel()
        await stream.aclose()


async def count_tokens(
    ex: Exchange, client: Palyra, data: dict[str, Any], caller: dict[str, Any]
) -> None:
    """``POST /v1/messages/count_tokens``: the provider's exact count where it
    has one (Anthropic's), else palyra's estimate."""
    model = _model(data)
    turns = openai_messages(data)
    options: dict[str, Any] = {}
    tools = options_of({**data, "max_tokens": 1}).get("tools")
    if tools:
        options["tools"] = tools
    counted = await client.acount_tokens(
        turns, model, **_caller(data, caller), **options
    )
    total = (
        counted.exact if counted.exact is not None else counted.estimate.prompt_tokens
    )
    await ex.answer_json(200, {"input_tokens": total})
