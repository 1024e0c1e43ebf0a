"""Anthropic's named stream events, translated into OpenAI-shaped chunks.

Event to chunk, as a small state machine fed one event at a time:

- ``message_start``: id, model and input usage; a first chunk with the role.
- ``content_block_start``: a ``tool_use`` block opens a tool call, with a new
  OpenAI ``index`` (one per tool, in order) and its id and name.
- ``content_block_delta``: ``text_delta`` gives content; ``input_json_delta``
  gives argument pieces for that tool's index; ``thinking_delta`` gives
  ``reasoning_content`` (kept out of ``content``).
- ``message_delta``: the finish reason and output usage.
- ``message_stop``: the end; the usage chunk follows when the caller asked.
- ``ping`` and unknown events are ignored; ``error`` raises the typed error.

A stream that ends without ``message_stop`` raises `StreamInterruptedError`; a
tool call whose arguments never became complete JSON raises
`APIResponseValidationError` at the end instead of passing as a success.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import APIError, APIResponseValidationError, StreamInterruptedError
from .._wire import ChatCompletion, ChatCompletionChunk, CompletionUsage
from .base import SSEChunkParser, Target, error_from_payload, stream_error_status
from .sse import ServerSentEvent

__all__ = [
    "AnthropicStreamParser",
    "Malformed",
    "finish_reason",
    "text_of",
    "usage_from",
]

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str | None:
    """OpenAI finish reason for an Anthropic stop reason; unknown ones pass through
    (``pause_turn`` among them: the turn was paused and can be continued)."""
    if stop_reason is None:
        return None
    return _FINISH.get(stop_reason, stop_reason)


class Malformed(ValueError):
    """A field of an Anthropic answer has the wrong type; the message names
    the field, never its value."""


def usage_from(usage: Any) -> dict[str, Any]:
    """OpenAI usage: prompt tokens include cache reads and writes.

    ``cache_creation``'s 1-hour writes become ``cache_write_1h_tokens`` (a
    palyra extension) when its two counts add up to the writes; an odd or
    malformed split is dropped rather than raised on: the aggregate is what
    Anthropic bills.

    Raises:
        Malformed: a count is not a non-negative whole number.
    """
    if not isinstance(usage, dict):
        raise Malformed("usage is not an object")
    uncached = _count(usage, "input_tokens")
    read = _count(usage, "cache_read_input_tokens")
    written = _count(usage, "cache_creation_input_tokens")
    output = _count(usage, "output_tokens")
    prompt = uncached + read + written
    details: dict[str, Any] = {"cached_tokens": read, "cache_write_tokens": written}
    hour = _hour_writes(usage.get("cache_creation"), written)
    if hour is not None:
        details["cache_write_1h_tokens"] = hour
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": details,
    }


def _hour_writes(split: Any, written: int) -> int | None:
    """The 1-hour writes of ``cache_creation``, when its counts are whole and
    add up to ``written``; else None (the split only refines the price)."""
    if not isinstance(split, dict):
        return None
    try:
        five = _count(split, "ephemeral_5m_input_tokens")
        hour = _count(split, "ephemeral_1h_input_tokens")
    except Malformed:
        return None
    return hour if five + hour == written else None


def _count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name) or 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise Malformed(f"usage.{name} is not a token count")
    if value != int(value):
        raise Malformed(f"usage.{name} is not a whole number")
    return int(value)


def text_of(value: Any, where: str) -> str:
    """A text field, which must be a string.

    Raises:
        Malformed: naming ``where``.
    """
    if not isinstance(value, str):
        raise Malformed(f"{where} is not a string")
    return value


@dataclass(slots=True)
class _State:
    id: str = ""
    model: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    # Anthropic block index -> OpenAI tool-call index, and its name.
    tools: dict[int, tuple[int, str]] = field(default_factory=dict)
    # Tool-call indexes that received argument pieces.
    with_arguments: set[int] = field(default_factory=set)
    stop_reason: str | None = None
    stopped: bool = False
    created: int = 0
    # Anthropic block index -> thinking block being assembled (signature included),
    # to be sent back with a tool result as extended thinking requires.
    thinking: dict[int, dict[str, Any]] = field(default_factory=dict)


class AnthropicStreamParser(SSEChunkParser):
    """Incremental parser of an Anthropic Messages event stream."""

    __slots__ = ("_state",)
    _cut_message = (
        "upstream stream ended in the middle of an event, before message_stop"
    )

    def __init__(self, target: Target, *, forward_usage: bool) -> None:
        super().__init__(target, forward_usage=forward_usage)
        self._state = _State()

    def _events(self, events: list[ServerSentEvent]) -> list[ChatCompletionChunk]:
        chunks = []
        add = self.accumulator.add
        validate = ChatCompletionChunk.model_validate
        event: ServerSentEvent | None = None
        # One try around the loop, not one per event: this is the hot path.
        try:
            for event in events:
                if self._state.stopped:
                    continue
                # The whole event is validated before any of it is kept: a bad
                # event leaves nothing of itself in the accumulator.
                for chunk in [validate(body) for body in self._translate(event)]:
                    add(chunk)
                    if chunk.choices or self._forward_usage:
                        chunks.append(chunk)
        except APIError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            raise self._malformed(event, exc) from None
        return chunks

    def _malformed(self, event: ServerSentEvent | None, exc: Exception) -> APIError:
        """An event of the wrong shape: a typed error naming its type (never
        quoting it: it may hold anything)."""
        detail = str(exc) if isinstance(exc, Malformed) else type(exc).__name__
        kind = (event.event if event is not None else None) or "message"
        return self._target.fail(
            APIResponseValidationError,
            f"malformed {kind} event in upstream stream ({detail})",
        )

    def _translate(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        payload = self._payload(event)
        kind = payload.get("type", event.event)
        if kind == "error" or event.event == "error":
            error = payload.get("error", payload)
            if not isinstance(error, dict):
                error = {"message": str(error)}
                payload = {"error": error}
            status = stream_error_status(error)
            raise error_from_payload(self._target, status, payload, None)
        handler = _HANDLERS.get(kind)
        return handler(self, payload) if handler else []

    def _payload(self, event: ServerSentEvent) -> dict[str, Any]:
        try:
            payload = json.loads(event.data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise self._target.fail(
                APIResponseValidationError,
                f"malformed {event.event or 'message'} event in upstream stream"
                " (not a JSON object)",
            )
        return payload

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        state = self._state
        return {
            "id": state.id,
            "model": state.model,
            "created": state.created,
            "choices": [choice],
        }

    def _message_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        message = payload.get("message") or {}
        self._state.id = str(message.get("id", ""))
        self._state.model = str(message.get("model", ""))
        self._state.usage = dict(message.get("usage") or {})
        self._state.created = int(time.time())
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        block = payload.get("content_block") or {}
        if block.get("type") in ("thinking", "redacted_thinking"):
            self._state.thinking[int(payload.get("index", 0))] = dict(block)
            return []
        if block.get("type") != "tool_use":
            return []
        index = len(self._state.tools)
        name = str(block.get("name", ""))
        self._state.tools[int(payload.get("index", 0))] = (index, name)
        call = {
            "index": index,
            "id": block.get("id", ""),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text", "")
            if type(text) is not str:  # the check inline: most events are these
                text = text_of(text, "text")
            return [self._chunk({"content": text})]
        if kind == "input_json_delta":
            tool = self._state.tools.get(int(payload.get("index", 0)))
            piece = text_of(delta.get("partial_json", ""), "partial_json")
            if tool is None or not piece:
                return []
            self._state.with_arguments.add(tool[0])
            call = {"index": tool[0], "function": {"arguments": piece}}
            return [self._chunk({"tool_calls": [call]})]
        thinking = self._state.thinking.get(int(payload.get("index", 0)))
        if kind == "thinking_delta":
            piece = text_of(delta.get("thinking", ""), "thinking")
            if thinking is not None:
                thinking["thinking"] = thinking.get("thinking", "") + piece
            return [self._chunk({"reasoning_content": piece})]
        if kind == "signature_delta" and thinking is not None:
            thinking["signature"] = delta.get("signature", "")
        return []

    def _block_stop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        tool = self._state.tools.get(int(payload.get("index", 0)))
        if tool is None or tool[0] in self._state.with_arguments:
            return []
        # A tool called without input: say "{}" as OpenAI streams do.
        call = {"index": tool[0], "function": {"arguments": "{}"}}
        return [self._chunk({"tool_calls": [call]})]

    def _message_delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        # Null fields mean "unchanged", not zero (as the SDK reads them).
        usage = payload.get("usage") or {}
        self._state.usage.update({k: v for k, v in usage.items() if v is not None})
        stop = (payload.get("delta") or {}).get("stop_reason")
        if stop is None:
            return []
        self._state.stop_reason = stop
        return [self._chunk({}, finish_reason(stop))]

    def _message_stop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        self._state.stopped = True
        chunk = self._chunk({})
        chunk["choices"] = []
        chunk["usage"] = usage_from(self._state.usage)
        return [chunk]

    @property
    def usage(self) -> CompletionUsage | None:
        """Usage so far: input tokens arrive with ``message_start``, output
        tokens with each ``message_delta``."""
        if self.accumulator.usage is not None:
            return self.accumulator.usage
        if not self._state.usage:
            return None
        try:
            return CompletionUsage.model_validate(usage_from(self._state.usage))
        except Malformed:
            return None  # the stream fails on it at message_stop

    def partial(self) -> ChatCompletion:
        """The answer so far. Its usage is set once the ``message_delta`` with
        the stop reason came: that one carries the final counts, so a stream
        cut after it (before ``message_stop``) is billed as reported."""
        completion = self.accumulator.completion()
        if completion.usage is None and self._state.stop_reason is not None:
            completion.usage = self.usage
        return completion

    def close(self) -> ChatCompletion:
        """End of body: the assembled answer, or a typed error."""
        self._sse.close()
        if not self._state.stopped:
            raise self._target.fail(
                StreamInterruptedError,
                "upstream stream ended before message_stop after"
                f" {self.accumulator.chunks} chunks; the answer is partial",
            )
        completion = self.accumulator.completion()
        if self._state.thinking and completion.choices:
            blocks = [block for _, block in sorted(self._state.thinking.items())]
            completion.choices[0].message.thinking_blocks = blocks  # type: ignore[attr-defined]
        for choice in completion.choices:
            for call in choice.message.tool_calls or []:
                try:
                    json.loads(call.function.arguments or "{}")
                except ValueError:
                    raise self._target.fail(
                        APIResponseValidationError,
                        f"tool call {call.function.name!r} ended with incomplete"
                        f" JSON arguments (stop_reason {self._state.stop_reason});"
                        " raise max_tokens or retry",
                    ) from None
        return completion


_HANDLERS = {
    "message_start": AnthropicStreamParser._message_start,
    "content_block_start": AnthropicStreamParser._block_start,
    "content_block_delta": AnthropicStreamParser._block_delta,
    "content_block_stop": AnthropicStreamParser._block_stop,
    "message_delta": AnthropicStreamParser._message_delta,
    "message_stop": AnthropicStreamParser._message_stop,
}
