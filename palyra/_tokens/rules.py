"""The chat-format rules: what each message, content part, tool call and tool
definition costs beyond its text, after the OpenAI cookbook."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .images import image_tokens

__all__ = [
    "PER_MESSAGE",
    "PER_NAME",
    "PER_TOOL_CALL",
    "REPLY_PRIMING",
    "function_tokens",
    "loose_strings",
    "part_tokens",
    "tools_tokens",
]

# OpenAI cookbook chat-format constants ("How to count tokens with tiktoken").
PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
# Not in the cookbook: the wrapper around each function call in an assistant
# message, an empirical guess of the same size as the per-message wrapper.
PER_TOOL_CALL = 3
# The cookbook's num_tokens_for_tools is an empirical fit of how the server
# renders tool definitions (it matched the API on its examples, not in general):
# func_init is 7 for the gpt-4o family and 10 for gpt-4 / gpt-3.5-turbo; the rest
# are shared. Nested schemas are outside it; we encode them as JSON text.
_PROP_INIT, _PROP_KEY, _ENUM_INIT, _ENUM_ITEM, _FUNC_END = 3, 3, -3, 3, 12
_FLAT_SCHEMA_KEYS = frozenset({"type", "description", "enum"})


def loose_strings(value: object) -> Iterator[str]:
    """Text found in arbitrary JSON, skipping inline binary payloads."""
    if isinstance(value, str):
        if not value.startswith("data:"):
            yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in ("data", "file_data"):  # base64 audio/files, not text
                yield from loose_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from loose_strings(item)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def part_tokens(part: object, count: Callable[[str], int]) -> tuple[int, bool]:
    """Tokens of one content part, and whether they are approximate."""
    if isinstance(part, str):
        return count(part), False
    if not isinstance(part, Mapping):
        return 0, True
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text", "refusal"):
        text = part.get(kind if kind == "refusal" else "text")
        if isinstance(text, str):
            return count(text), False
    if kind == "image_url":
        return image_tokens(part)
    # input_audio, file, ...: we cannot measure the payload.
    return sum(map(count, loose_strings(part))), True


def function_tokens(fn: Mapping[str, Any], count: Callable[[str], int]) -> int:
    """Tokens of a function call's name and arguments (without its wrapper)."""
    arguments = fn.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = _json(arguments)
    return count(str(fn.get("name", ""))) + count(arguments)


def tools_tokens(
    tools: Sequence[Mapping[str, Any]], count: Callable[[str], int], func_init: int
) -> int:
    """Tool definitions, by the cookbook's ``num_tokens_for_tools`` approximation."""
    total = _FUNC_END
    for tool in tools:
        fn = tool.get("function")
        if not isinstance(fn, Mapping):  # not a function tool: count its JSON
            total += count(_json(tool))
            continue
        total += func_init
        desc = str(fn.get("description") or "").removesuffix(".")
        total += count(f"{fn.get('name', '')}:{desc}")
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, Mapping) else None
        if not isinstance(props, Mapping) or not props:
            continue
        total += _PROP_INIT
        for key, spec in props.items():
            total += _PROP_KEY
            if not isinstance(spec, Mapping):
                continue
            enum = spec.get("enum")
            if isinstance(enum, list):
                total += _ENUM_INIT + sum(_ENUM_ITEM + count(str(i)) for i in enum)
            p_type = spec.get("type", "")
            p_type = p_type if isinstance(p_type, str) else _json(p_type)
            p_desc = str(spec.get("description") or "").removesuffix(".")
            total += count(f"{key}:{p_type}:{p_desc}")
            extra = {k: v for k, v in spec.items() if k not in _FLAT_SCHEMA_KEYS}
            if extra:  # nested schemas etc., beyond the cookbook's flat model
                total += count(_json(extra))
    return total
