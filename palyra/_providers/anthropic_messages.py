"""Pure translation between OpenAI-shaped chat and the Anthropic Messages API.

`messages_payload` turns an OpenAI-shaped request into a Messages API body;
`completion_from_message` turns a Messages API answer into a `ChatCompletion`.
Both are table-tested. Choices worth knowing:

- ``max_tokens`` (required by Anthropic) comes from the request, else the model
  entry's ``max_output_tokens``, else `DEFAULT_MAX_TOKENS`.
- JSON mode (``response_format`` ``json_object`` / ``json_schema``) is asked for
  in the system prompt, and the answer is checked to parse as JSON.
- OpenAI options Anthropic has no equivalent for (``seed``, penalties,
  ``logit_bias``, ``store``, ``service_tier``...) are not sent; ``n > 1`` and
  ``logprobs`` are refused.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import InvalidRequestError, UnsupportedCapabilityError
from .._request import ChatRequest
from .._wire import ChatCompletion
from .anthropic_stream import Malformed, finish_reason, text_of, usage_from
from .base import Target

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_INSTRUCTION",
    "check_thinking",
    "completion_from_message",
    "messages_payload",
]

DEFAULT_MAX_TOKENS = 4096
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Image types the Messages API accepts (and the common misspelling of one).
_MEDIA_TYPES = {
    "image/jpg": "image/jpeg",
    "image/jpeg": "image/jpeg",
    "image/png": "image/png",
    "image/gif": "image/gif",
    "image/webp": "image/webp",
}
JSON_INSTRUCTION = (
    "Respond with one valid JSON object and nothing else: no prose, no code fences."
)


def check_thinking(payload: dict[str, Any], *, explicit_max: bool) -> None:
    """Extended thinking's rules, checked before the upstream says 400.

    ``max_tokens`` must exceed ``budget_tokens`` (a defaulted one is raised to
    make room), and sampling must be left alone: temperature 1, no ``top_k``,
    ``top_p`` of at least 0.95, and no forced tool choice.
    """
    thinking = payload.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens") or 0
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise InvalidRequestError("thinking.budget_tokens: must be a positive integer")
    # extra_body may have set these too: the rules below compare them.
    for name in ("max_tokens", "temperature", "top_p"):
        value = payload.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequestError(
                f"extra_body.{name}: must be a number, got {type(value).__name__}"
            )
    if payload["max_tokens"] <= budget:
        if explicit_max:
            raise InvalidRequestError(
                f"max_tokens ({payload['max_tokens']}) must exceed"
                f" thinking.budget_tokens ({budget})"
            )
        payload["max_tokens"] = budget + DEFAULT_MAX_TOKENS
    if payload.get("temperature", 1) != 1 or "top_k" in payload:
        raise InvalidRequestError(
            "with extended thinking anthropic takes no temperature (other than 1)"
            " and no top_k"
        )
    if payload.get("top_p", 1) < 0.95:
        raise InvalidRequestError("with extended thinking top_p must be >= 0.95")
    choice = payload.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("any", "tool"):
        raise InvalidRequestError(
            "with extended thinking tool_choice must be 'auto' or 'none'"
        )


def messages_payload(target: Target, request: ChatRequest) -> dict[str, Any]:
    """The Messages API body for an OpenAI-shaped chat request.

    Raises:
        UnsupportedCapabilityError: for ``n > 1`` or ``logprobs``.
        InvalidRequestError: for tool-call arguments that are not JSON.
    """
    body = request.body
    if body.get("n", 1) != 1 or body.get("logprobs"):
        what = "n > 1" if body.get("n", 1) != 1 else "logprobs"
        raise UnsupportedCapabilityError(
            f"anthropic models do not support {what}",
            capability=what,
            provider=target.model.provider.id,
            model=target.model.id,
        )
    try:
        system, messages = _split_system(request.messages)
    except UnsupportedCapabilityError as exc:
        exc.provider, exc.model = target.model.provider.id, target.model.id
        raise
    if not messages:
        raise InvalidRequestError(
            "messages: at least one non-system message is required"
        )
    if request.needs.json_mode:
        system.append(
            {"type": "text", "text": _json_instruction(body.get("response_format"))}
        )
    payload: dict[str, Any] = {
        "model": target.model.upstream,
        "max_tokens": request.requested_output_tokens
        or target.model.entry.max_output_tokens
        or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        # A plain string unless a block asks for prompt caching.
        cached = any("cache_control" in block for block in system)
        payload["system"] = (
            system if cached else "\n\n".join(block["text"] for block in system)
        )
    _copy_options(body, payload, request.end_user)
    if request.stream:
        payload["stream"] = True
    return payload


def _copy_options(
    body: Mapping[str, Any], payload: dict[str, Any], end_user: str | None
) -> None:
    for name in ("temperature", "top_p"):
        if name in body:
            payload[name] = body[name]
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        payload["tools"] = [_tool(t, i) for i, t in enumerate(body["tools"])]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and body.get("tools"):
        payload["tool_choice"] = choice
    user = body.get("user") or body.get("safety_identifier")
    metadata = body.get("metadata") or {}
    user = metadata.get("user_id") or user or end_user
    if user:
        payload["metadata"] = {"user_id": str(user)}


def _json_instruction(fmt: Any) -> str:
    spec = fmt.get("json_schema") if isinstance(fmt, Mapping) else None
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not schema:
        return JSON_INSTRUCTION
    try:
        text = json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise InvalidRequestError(
            "response_format.json_schema.schema: must be JSON (a JSON schema)"
        ) from None
    return f"{JSON_INSTRUCTION} It must match this JSON schema: {text}"


def _split_system(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message["role"]
        if role in ("system", "developer"):
            system.extend(_system_blocks(message.get("content"), index))
            continue
        blocks = _blocks(message, index)
        if not blocks:
            continue
        wire_role = "assistant" if role == "assistant" else "user"
        # The API wants alternating turns: merge consecutive same-role messages.
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # tool_result blocks must open a user turn; sort is stable.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return system, turns


def _system_blocks(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks = []
    for part in content or []:
        if part.get("type") != "text":
            raise UnsupportedCapabilityError(
                f"messages[{index}]: anthropic system prompts take text only,"
                f" not {part.get('type')!r} parts",
                capability="system_" + str(part.get("type")),
            )
        if part.get("text", "").strip():
            block = {"type": "text", "text": part["text"]}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _blocks(message: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    role = message["role"]
    if role in ("tool", "function"):
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": _tool_id(message.get("tool_call_id"), index),
            "content": _result_content(message.get("content")),
        }
        if message.get("is_error"):
            result["is_error"] = True
        return [result]
    blocks: list[dict[str, Any]] = []
    if role == "assistant":
        # Extended thinking with tools: the API wants the signed blocks back first.
        thinking = message.get("thinking_blocks") or []
        if not isinstance(thinking, list | tuple) or not all(
            isinstance(block, Mapping) for block in thinking
        ):
            raise InvalidRequestError(
                f"messages[{index}].thinking_blocks: must be a list of the"
                " thinking blocks of an earlier answer"
            )
        blocks = [dict(block) for block in thinking]
    blocks += _content_blocks(message.get("content"))
    for call in message.get("tool_calls") or []:
        blocks.append(_tool_use(call, index))
    return blocks


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks = []
    for part in content or []:
        kind = part.get("type")
        if kind == "refusal" and part.get("refusal"):
            blocks.append({"type": "text", "text": part["refusal"]})
        elif kind == "text" and part.get("text", "").strip():
            block = {"type": "text", "text": part["text"]}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            blocks.append(_image(part["image_url"]))
        elif kind in ("input_audio", "file"):
            # Never drop input silently: the Messages API has no such block.
            raise UnsupportedCapabilityError(
                f"anthropic models take no {kind} content parts", capability=kind
            )
    return blocks


def _result_content(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return _content_blocks(content)


def _image(image: Any) -> dict[str, Any]:
    url = str(image.get("url") if isinstance(image, Mapping) else image)
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        media_type = _MEDIA_TYPES.get(media_type, media_type)
        if media_type not in _MEDIA_TYPES.values() or ";base64" not in header:
            raise InvalidRequestError(
                f"image data URL must be base64 {', '.join(_MEDIA_TYPES.values())},"
                f" not {header[5:]!r}"
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: Mapping[str, Any], index: int) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        raise InvalidRequestError(
            f"messages[{index}].tool_calls: arguments of {function.get('name')!r}"
            " are not JSON"
        ) from None
    return {
        "type": "tool_use",
        "id": _tool_id(call.get("id"), index),
        "name": function.get("name"),
        "input": tool_input,
    }


def _tool_id(value: Any, index: int) -> str:
    """Tool-call ids as the API accepts them (``[A-Za-z0-9_-]``), the same on the
    tool_use and its tool_result, so ids from another provider still pair up."""
    if not value:
        raise InvalidRequestError(f"messages[{index}]: a tool call id is required")
    return _ID_UNSAFE.sub("_", str(value))


def _tool(tool: Mapping[str, Any], index: int) -> dict[str, Any]:
    function = tool.get("function", tool)
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise InvalidRequestError(
            f"tools[{index}]: anthropic takes function tools with a name, not"
            f" {tool.get('type', 'this')!r} tools"
        )
    result = {
        "name": function["name"],
        "input_schema": function.get("parameters")
        or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        result["description"] = function["description"]
    return result


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None and parallel is None:
        return None
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                "tool_choice: anthropic takes 'auto', 'required', 'none' or"
                ' {"type": "function", "function": {"name": ...}}'
            )
        mapped: dict[str, Any] = {"type": "tool", "name": name}
    else:
        kind = {"required": "any", "none": "none"}.get(str(choice), "auto")
        mapped = {"type": kind}
    if parallel is False and mapped["type"] != "none":
        mapped["disable_parallel_tool_use"] = True
    return mapped


def completion_from_message(message: Mapping[str, Any]) -> ChatCompletion:
    """A `ChatCompletion` for a Messages API ``message`` object."""
    text: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    thinking: list[Any] = []
    for i, block in enumerate(message.get("content") or []):
        if not isinstance(block, dict):
            raise Malformed(f"content[{i}] is not a content block")
        kind = block.get("type")
        if kind == "text":
            text.append(text_of(block.get("text", ""), f"content[{i}].text"))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            tool_calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": arguments},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(block)
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text else None,
        "tool_calls": tool_calls or None,
    }
    if thinking:
        reply["thinking_blocks"] = thinking
        reply["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
    usage = usage_from(message.get("usage") or {})
    return ChatCompletion.model_validate(
        {
            "id": message.get("id", ""),
            "created": int(time.time()),
            "model": message.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": reply,
                    "finish_reason": finish_reason(message.get("stop_reason")),
                }
            ],
            "usage": usage,
        }
    )
