"""Anthropic's Messages shape, translated both ways: a ``/v1/messages``
request into the OpenAI-shaped call palyra makes (whichever provider serves
it), and palyra's answer back into a ``message`` object."""

from __future__ import annotations

import json
from typing import Any

from ._errors import Problem

__all__ = ["STOP_REASONS", "message_of", "openai_messages", "options_of", "usage_of"]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _bad(param: str, what: str) -> Problem:
    return Problem(400, f"{param}: {what}", param=param, code="invalid_value")


def openai_messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    """``system`` and ``messages`` as OpenAI-shaped messages."""
    out: list[dict[str, Any]] = []
    system = data.get("system")
    if isinstance(system, str):
        if system:
            out.append({"role": "system", "content": system})
    elif isinstance(system, list):
        text = "\n\n".join(
            b.get("text", "")
            for b in system
            if isinstance(b, dict) and b.get("type") == "text"
        )
        out.append({"role": "system", "content": text})
    elif system is not None:
        raise _bad("system", "must be a string or a list of text blocks")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list of messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "user",
            "assistant",
        ):
            raise _bad(
                f"messages[{i}]", "must be a message with role user or assistant"
            )
        out.extend(_turn(message, f"messages[{i}]"))
    return out


def _turn(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content", "must be a string or a list of blocks")
    if role == "assistant":
        return [_assistant(content, where)]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": _image(block, f"{where}.content[{j}]")},
                }
            )
        elif kind == "tool_result":
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id", ""),
                    "content": _result_text(block.get("content")),
                }
            )
        else:
            raise _bad(
                f"{where}.content[{j}]", "must be a text, image or tool_result block"
            )
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _assistant(content: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id", f"toolu_{j}"),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": json.dumps(block.get("input", {})),
                    },
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise _bad(
                f"{where}.content[{j}]", "must be a text, tool_use or thinking block"
            )
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _image(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        media = source.get("media_type", "image/png")
        return f"data:{media};base64,{source.get('data', '')}"
    if isinstance(source, dict) and source.get("type") == "url" and source.get("url"):
        return str(source["url"])
    raise _bad(f"{where}.source", "must be a base64 or url image source")


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def options_of(data: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI options of a Messages request (its other fields go upstream
    in ``extra_body``; ``route`` and ``hint`` are palyra's)."""
    max_tokens = data.get("max_tokens")
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or max_tokens < 1
    ):
        raise _bad("max_tokens", "must be a positive integer")
    options: dict[str, Any] = {"max_tokens": max_tokens}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if theirs in data:
            options[ours] = data[theirs]
    if "stop_sequences" in data:
        options["stop"] = data["stop_sequences"]
    for name in ("route", "hint"):
        if name in data:
            options[name] = data[name]
    tools = data.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools", "must be a list of tools")
        options["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    choice = data.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            options["tool_choice"] = {
                "type": "function",
                "function": {"name": choice.get("name")},
            }
        elif kind in ("auto", "none"):
            options["tool_choice"] = kind
        elif kind == "any":
            options["tool_choice"] = "required"
        if choice.get("disable_parallel_tool_use") is True:
            options["parallel_tool_calls"] = False
    extra = {
        k: v for k, v in data.items() if k in ("top_k", "thinking", "service_tier")
    }
    if extra:
        options["extra_body"] = extra
    return options


def _tool(tool: Any, index: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise _bad(f"tools[{index}]", "must be a tool with a name and an input_schema")
    function: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object"},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def usage_of(reply: Any) -> dict[str, int]:
    """The answer's usage as Anthropic reports it, cache fields included."""
    info = getattr(reply, "palyra", None)
    usage = info.usage if info is not None else None
    if usage is None:
        raw = getattr(reply, "usage", None)
        prompt = raw.prompt_tokens if raw is not None else 0
        output = raw.completion_tokens if raw is not None else 0
        return {
            "input_tokens": prompt,
            "output_tokens": output,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    return {
        "input_tokens": usage.input_uncached,
        "output_tokens": usage.output,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation_input_tokens": usage.cache_write,
    }


def message_of(reply: Any, model: str) -> dict[str, Any]:
    """palyra's answer as a Messages ``message`` object."""
    choice = reply.choices[0]
    message = choice.message
    content: list[dict[str, Any]] = []
    if message.content:
        content.append({"type": "text", "text": message.content})
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = {}
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments,
            }
        )
    return {
        "id": "msg_" + reply.id.removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.finish_reason or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_of(reply),
    }
