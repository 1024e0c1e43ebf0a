"""An in-process Anthropic Messages API, behind `palyra.testing.AnthropicMock`.

It renders the answer decision of ``scripted`` (the same script, echo and token
counts as the OpenAI-dialect backend) in Anthropic's wire format:

- ``POST /v1/messages``: a ``message`` object, or the named event stream shaped
  like recorded real ones (``message_start``, ``ping`` after the first block
  opens, ``content_block_*`` with ``text_delta`` and ``input_json_delta``,
  ``message_delta`` with the stop reason and output usage, ``message_stop``);
- ``POST /v1/messages/count_tokens`` and ``GET /v1/models`` (pages by
  ``limit`` and ``after_id``);
- errors in the ``{"type": "error", "error": {...}}`` envelope, typed by status.

Requests are checked where the real API refuses what a client can get wrong
(see ``anthropic_checks``): a 400 ``invalid_request_error`` says what.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from .anthropic_checks import header_problem, request_problem
from .anthropic_messages import JSON_INSTRUCTION
from .scripted import Prompt, ScriptedBackend, ScriptedReply, ToolCall, Turn, pieces

__all__ = ["AnthropicBackend"]

# Listed by ``GET /v1/models``: a fixed date, so the answer never changes.
_MODEL_CREATED_AT = "2025-01-01T00:00:00Z"
_DEFAULT_PAGE, _MAX_PAGE = 20, 1000
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# Scripted finish reasons may be OpenAI's; Anthropic's own pass through.
_STOP_REASONS = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


class AnthropicBackend(ScriptedBackend):
    """Scriptable state of one in-process upstream answering as Anthropic does.

    Replies are FIFO, as on `DeterministicBackend`: each ``/v1/messages`` call
    takes the next queued `ScriptedReply` or echoes the last user text. Every
    request body received is kept in `history`, refused ones included.
    """

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request in the Anthropic wire format."""
        problem = header_problem(request.headers)
        if problem is not None:
            return _error(400, problem)
        path = request.url.path
        if request.method == "GET" and path.endswith("/models"):
            return self._models(request.url.params)
        counting = path.endswith("/messages/count_tokens")
        if request.method != "POST" or not (counting or path.endswith("/messages")):
            return _error(404, f"Not Found: {request.method} {path}")
        try:
            payload = json.loads(request.content)
        except ValueError:
            return _error(400, "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return _error(400, "The request body must be a JSON object.")
        problem = request_problem(payload, counting=counting)
        if problem is not None:
            # Refused before any reply is taken, as the real API refuses before
            # it generates: the queue is left for the corrected call.
            return _error(400, problem, self._record(payload))
        return self._count(payload) if counting else self._messages(payload)

    def _scripted_call(self, call: Mapping[str, Any]) -> Mapping[str, Any]:
        call = super()._scripted_call(call)
        arguments = call.get("arguments", {})
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = None
        if not isinstance(parsed, Mapping):
            raise ValueError(
                f"tool call {call['name']!r}: an Anthropic tool_use input is a JSON"
                f" object, not {arguments!r}"
            )
        return call

    def _messages(self, payload: dict[str, Any]) -> httpx.Response:
        reply, number = self._next(payload)
        if reply is not None and reply.status != 200:
            return _scripted_error(reply, number)
        turn = self._turn(reply, number, _prompt(payload), "toolu_det")
        if payload.get("stream"):
            headers = {"content-type": "text/event-stream; charset=utf-8"}
            headers["request-id"] = _request_id(number)
            return httpx.Response(200, headers=headers, content=_stream(turn))
        return _json(_message(turn), number)

    def _count(self, payload: dict[str, Any]) -> httpx.Response:
        reply, number = self._next(payload, errors_only=True)
        if reply is not None:
            return _scripted_error(reply, number)
        prompt = _prompt(payload)
        estimate = self._counter().estimate_chat(
            prompt.model, prompt.messages, prompt.tools
        )
        return _json({"input_tokens": estimate.prompt_tokens}, number)

    def _models(self, params: httpx.QueryParams) -> httpx.Response:
        try:
            limit = int(params.get("limit", _DEFAULT_PAGE))
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_PAGE:
            return _error(400, f"limit: must be an integer from 1 to {_MAX_PAGE}")
        start = 0
        after = params.get("after_id")
        if after is not None:
            if after not in self.models:
                return _error(400, f"after_id: no model {after!r} in this list")
            start = self.models.index(after) + 1
        page = self.models[start : start + limit]
        return _json(
            {
                "data": [_model(model) for model in page],
                "has_more": start + limit < len(self.models),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )


def _prompt(payload: dict[str, Any]) -> Prompt:
    """The decision's view of a Messages API body: the system prompt leads the
    messages (it is counted), and palyra's JSON-mode instruction means JSON."""
    system = payload.get("system")
    texts = (
        [system]
        if isinstance(system, str)
        else [str(block.get("text", "")) for block in system or []]
    )
    messages = [{"role": "system", "content": system}] if system else []
    return Prompt(
        model=payload["model"],
        messages=[*messages, *payload["messages"]],
        tools=payload.get("tools"),
        json_mode=any(JSON_INSTRUCTION in text for text in texts),
        stop=tuple(payload.get("stop_sequences") or ()),
    )


def _stop_reason(turn: Turn) -> str:
    if turn.finish_reason == "stop":
        return "stop_sequence" if turn.stop_sequence else "end_turn"
    if turn.finish_reason:
        return _STOP_REASONS.get(turn.finish_reason, turn.finish_reason)
    if turn.stop_sequence:
        return "stop_sequence"
    if turn.tool_calls:
        return "tool_use"
    return "refusal" if turn.refusal else "end_turn"


def _text(turn: Turn) -> str | None:
    """The answer's text block, if it has one: a refusal is text that stops
    with ``refusal``; an answer of tool calls alone has no text block."""
    text = (turn.content or "") + (turn.refusal or "")
    return text if text or not turn.tool_calls else None


def _tool_use(call: ToolCall, tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input}


def _message(turn: Turn) -> dict[str, Any]:
    text = _text(turn)
    content = [] if text is None else [{"type": "text", "text": text}]
    content += [_tool_use(c, json.loads(c.arguments)) for c in turn.tool_calls]
    return {
        **_head(turn),
        "content": content,
        "stop_reason": _stop_reason(turn),
        "stop_sequence": turn.stop_sequence,
        "usage": {
            "input_tokens": turn.prompt_tokens,
            "output_tokens": turn.completion_tokens,
        },
    }


def _head(turn: Turn) -> dict[str, Any]:
    return {
        "id": f"msg_det_{turn.number}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
    }


def _stream(turn: Turn) -> bytes:
    """The event stream of one answer, event for event as the API sends it."""
    start = {
        **_head(turn),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": turn.prompt_tokens, "output_tokens": 1},
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    text = _text(turn)
    if text is not None:
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces(text)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for call in turn.tool_calls:
        # The first piece is empty, as in recorded streams.
        parts = ["", *pieces(call.arguments, size=16)]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in parts]
        blocks.append((_tool_use(call, {}), deltas))
    for index, (block, deltas) in enumerate(blocks):
        events.append(
            {"type": "content_block_start", "index": index, "content_block": block}
        )
        if index == 0:
            events.append({"type": "ping"})
        events += [
            {"type": "content_block_delta", "index": index, "delta": delta}
            for delta in deltas
        ]
        events.append({"type": "content_block_stop", "index": index})
    delta = {"stop_reason": _stop_reason(turn), "stop_sequence": turn.stop_sequence}
    usage = {"output_tokens": turn.completion_tokens}
    events.append({"type": "message_delta", "delta": delta, "usage": usage})
    events.append({"type": "message_stop"})
    return "".join(
        f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
        for event in events
    ).encode()


def _model(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": _display_name(model_id),
        "created_at": _MODEL_CREATED_AT,
    }


def _display_name(model_id: str) -> str:
    """``claude-sonnet-4-5`` -> ``Claude Sonnet 4.5`` (a date suffix dropped)."""
    words: list[str] = []
    for part in model_id.split("-"):
        if part.isdigit() and len(part) == 8:
            continue
        if part.isdigit() and words and words[-1][-1:].isdigit():
            words[-1] += "." + part
        else:
            words.append(part.capitalize())
    return " ".join(words) or model_id


def _request_id(number: int) -> str:
    return f"req_det_{number}"


def _json(payload: Any, number: int = 0) -> httpx.Response:
    return httpx.Response(
        200, json=payload, headers={"request-id": _request_id(number)}
    )


def _scripted_error(reply: ScriptedReply, number: int) -> httpx.Response:
    return _error(reply.status, reply.error_message, number)


def _error(status: int, message: str, number: int = 0) -> httpx.Response:
    """Anthropic's error envelope, its type following the status."""
    default = "invalid_request_error" if status < 500 else "api_error"
    error = {"type": _ERROR_TYPES.get(status, default), "message": message}
    rid = _request_id(number)
    body = {"type": "error", "error": error, "request_id": rid}
    return httpx.Response(status, json=body, headers={"request-id": rid})
