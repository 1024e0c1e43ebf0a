"""What the real Messages API refuses with a 400, checked by the Anthropic mock.

Only what a client can get wrong and would otherwise learn in production: the
``anthropic-version`` header; ``model`` and ``max_tokens``; sampling ranges
(Anthropic's ``temperature`` stops at 1, OpenAI's at 2); roles and non-empty
content; tools with a name and an input schema; and every ``tool_use`` answered
by a ``tool_result`` in the next message, and no result without its use.
Messages follow the API's own wording (``messages.1.role: ...``). Each check
returns the problem, or None when the request passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["header_problem", "request_problem"]

VERSIONS = ("2023-06-01", "2023-01-01")
_ROLES = ("user", "assistant")


def header_problem(headers: Mapping[str, str]) -> str | None:
    """The ``anthropic-version`` header is required, and must be a real version."""
    version = headers.get("anthropic-version")
    if version is None:
        return "anthropic-version: header is required"
    if version not in VERSIONS:
        return f"anthropic-version: {version!r} is not a valid version"
    return None


def request_problem(payload: Mapping[str, Any], *, counting: bool) -> str | None:
    """What the API would refuse in a ``/v1/messages`` (or count) body."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return "model: Field required"
    problem = None if counting else _max_tokens_problem(payload)
    for check in (_stream_problem, _sampling_problem, _system_problem, _tools_problem):
        problem = problem or check(payload)
    return problem or _messages_problem(payload.get("messages"))


def _max_tokens_problem(payload: Mapping[str, Any]) -> str | None:
    if "max_tokens" not in payload:
        return "max_tokens: Field required"
    value = payload["max_tokens"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"max_tokens: Input should be an integer of at least 1, not {value!r}"
    return None


def _stream_problem(payload: Mapping[str, Any]) -> str | None:
    if "stream" in payload and not isinstance(payload["stream"], bool):
        return "stream: Input should be a valid boolean"
    return None


def _sampling_problem(payload: Mapping[str, Any]) -> str | None:
    for name in ("temperature", "top_p"):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name}: Input should be a valid number"
        if not 0 <= value <= 1:
            return f"{name}: Input should be between 0 and 1, not {value}"
    stops = payload.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) and s for s in stops)
    ):
        return "stop_sequences: Input should be a list of non-empty strings"
    return None


def _system_problem(payload: Mapping[str, Any]) -> str | None:
    system = payload.get("system")
    if system is None or isinstance(system, str):
        return None
    if isinstance(system, list) and all(_is_text_block(b) for b in system):
        return None
    return "system: Input should be a string or a list of text blocks"


def _tools_problem(payload: Mapping[str, Any]) -> str | None:
    tools = payload.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            return f"tools.{index}.name: Field required"
        schema = tool.get("input_schema")
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            return f"tools.{index}.input_schema: Input should be an object schema"
    return None


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Field required"
    if not messages:
        return "messages: at least one message is required"
    pending: set[str] = set()  # tool_use ids the next message must answer
    for index, message in enumerate(messages):
        problem = _message_problem(message, index, last=index == len(messages) - 1)
        if problem is not None:
            return problem
        blocks = message["content"] if isinstance(message["content"], list) else []
        results = {b.get("tool_use_id") for b in blocks if b["type"] == "tool_result"}
        missing = pending - results if message["role"] == "user" else pending
        if missing:
            return _unanswered(index - 1, missing)
        unexpected = results - pending
        if unexpected:
            return (
                f"messages.{index}.content: unexpected `tool_use_id` found in"
                f" `tool_result` blocks: {', '.join(sorted(map(str, unexpected)))}."
                " Each `tool_result` block must have a corresponding `tool_use`"
                " block in the previous message."
            )
        uses = {str(b.get("id")) for b in blocks if b["type"] == "tool_use"}
        pending = uses if message["role"] == "assistant" else set()
    return _unanswered(len(messages) - 1, pending) if pending else None


def _unanswered(index: int, ids: set[str]) -> str:
    return (
        f"messages.{index}: `tool_use` ids were found without `tool_result` blocks"
        f" immediately after: {', '.join(sorted(ids))}. Each `tool_use` block must"
        " have a corresponding `tool_result` block in the next message."
    )


def _message_problem(message: Any, index: int, *, last: bool) -> str | None:
    if not isinstance(message, Mapping):
        return f"messages.{index}: Input should be an object"
    if message.get("role") not in _ROLES:
        return f"messages.{index}.role: Input should be 'user' or 'assistant'"
    content = message.get("content")
    if isinstance(content, list) and not all(
        isinstance(block, Mapping) and isinstance(block.get("type"), str)
        for block in content
    ):
        return f"messages.{index}.content: each block needs a 'type'"
    if not isinstance(content, str | list):
        return f"messages.{index}.content: Input should be a string or a list"
    if not content and not (last and message["role"] == "assistant"):
        return (
            f"messages.{index}: all messages must have non-empty content except"
            " for the optional final assistant message"
        )
    for block in content if isinstance(content, list) else ():
        if block["type"] == "text" and not _is_text_block(block, nonempty=True):
            return f"messages.{index}: text content blocks must be non-empty"
    return None


def _is_text_block(block: Any, *, nonempty: bool = False) -> bool:
    if not isinstance(block, Mapping) or block.get("type") != "text":
        return False
    text = block.get("text")
    return isinstance(text, str) and bool(text.strip() or not nonempty)
