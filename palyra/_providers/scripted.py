"""What the in-process upstreams share: the script, and one answer decision.

`ScriptedBackend` holds the FIFO of `ScriptedReply` objects and the history of
request bodies. `ScriptedBackend._turn` decides what one chat call answers (the
next scripted reply, or the echo of the last user text) as a dialect-neutral
`Turn`; the OpenAI-dialect backend (``deterministic``) and the Anthropic one
(``anthropic_mock``) only render it in their wire format. So both mocks script,
echo, count and stop alike.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._tokens import TokenCounter

__all__ = ["Prompt", "ScriptedBackend", "ScriptedReply", "ToolCall", "Turn", "pieces"]

_STREAM_PIECE_WORDS = 4
_WORDS = re.compile(r"\s*\S+\s*?(?=\s|$)|\s+")


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One canned answer queued on a `DeterministicBackend` (or a mock of
    ``palyra.testing``)."""

    content: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    finish_reason: str | None = None
    refusal: str | None = None
    status: int = 200
    error: str | None = None

    @property
    def error_message(self) -> str:
        """The message of a scripted error status."""
        return self.error or f"scripted status {self.status}"


@dataclass(frozen=True, slots=True)
class Prompt:
    """A chat request as the decision reads it, whatever the dialect.

    ``messages`` are role/content mappings (content a string or a list of
    ``{"type": "text", ...}`` parts and other blocks), system prompt included.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] | None = None
    json_mode: bool = False
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call of an answer, with its arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Turn:
    """What one chat call answers, before a dialect renders it.

    ``finish_reason`` is the scripted one (None when not scripted): each
    dialect has its own default. ``stop_sequence`` is the request's stop
    sequence the content was cut at, if any.
    """

    number: int
    model: str
    content: str | None
    refusal: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    stop_sequence: str | None
    prompt_tokens: int
    completion_tokens: int


class ScriptedBackend:
    """Scriptable state of one in-process upstream.

    Replies are FIFO: each call takes the next queued `ScriptedReply`, or echoes
    the last user message when the queue is empty. Every request body received
    is kept in `history`; ``models`` are the ids the model list answers with.
    """

    def __init__(
        self, counter: Callable[[], TokenCounter], *, models: Sequence[str] = ()
    ) -> None:
        self._counter = counter
        self._queue: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._requests = 0
        self.history: list[dict[str, Any]] = []
        self.models: list[str] = [str(model) for model in models]

    def enqueue(
        self,
        content: str | None = None,
        *,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        finish_reason: str | None = None,
        refusal: str | None = None,
        status: int = 200,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue the next reply (``times`` copies of it).

        Args:
            content: Text of the answer (or the transcript, for transcriptions).
            tool_calls: ``{"name": ..., "arguments": dict | str}`` items; the
                finish reason becomes ``tool_calls``.
            finish_reason: Override the finish reason.
            refusal: A refusal instead of content.
            status: Answer with this HTTP status instead (e.g. 429, 500).
            error: The error message for a non-200 status.
            times: Queue this many copies: a retried error must be scripted once
                per attempt (``max_retries + 1``) to reach the caller.

        Raises:
            ValueError: for a status that is neither 200 nor 4xx/5xx, an error
                message with status 200, or a tool call without a name.
        """
        if status != 200 and not 400 <= status <= 599:
            raise ValueError(f"status must be 200 or 400-599, not {status}")
        if error is not None and status == 200:
            raise ValueError("error needs a non-200 status")
        calls = tuple(self._scripted_call(call) for call in tool_calls)
        reply = ScriptedReply(content, calls, finish_reason, refusal, status, error)
        with self._lock:
            self._queue.extend([reply] * times)

    def _scripted_call(self, call: Mapping[str, Any]) -> Mapping[str, Any]:
        """A tool call as queued; a dialect refuses here what it cannot send."""
        return _normal_call(call)

    def _record(self, payload: dict[str, Any]) -> int:
        """Keep a request body that takes no reply; its number."""
        with self._lock:
            return self._keep(payload)

    def _keep(self, payload: dict[str, Any]) -> int:
        self.history.append(payload)
        self._requests += 1
        return self._requests

    def _next(
        self, payload: dict[str, Any], *, errors_only: bool = False
    ) -> tuple[ScriptedReply | None, int]:
        # Embeddings and token counts have no scripted content: they only take
        # a queued error, so a reply scripted for a chat call is not eaten by
        # one of them in between.
        with self._lock:
            number = self._keep(payload)
            reply = None
            if self._queue and not (errors_only and self._queue[0].status == 200):
                reply = self._queue.popleft()
            return reply, number

    def _turn(
        self, reply: ScriptedReply | None, number: int, prompt: Prompt, id_prefix: str
    ) -> Turn:
        """Decide a chat answer: the scripted ``reply``, else the echo.

        A stop sequence of the request found in the content ends the answer
        there, as it ends a model's output: the content is cut before it and
        no tool calls follow (a scripted finish reason still wins).
        """
        if reply is None:
            reply = ScriptedReply(content=_echo(prompt))
        content, stop = _cut_at_stop(reply.content, prompt.stop)
        calls = () if stop else reply.tool_calls
        counter = self._counter()
        estimate = counter.estimate_chat(prompt.model, prompt.messages, prompt.tools)
        text = (content or "") + (reply.refusal or "")
        completion = sum(counter.count_texts(prompt.model, [text])[0]) if text else 0
        return Turn(
            number=number,
            model=prompt.model,
            content=content,
            refusal=reply.refusal,
            tool_calls=tuple(
                _tool_call(f"{id_prefix}_{number}_{i}", call)
                for i, call in enumerate(calls)
            ),
            finish_reason=reply.finish_reason,
            stop_sequence=stop,
            prompt_tokens=estimate.prompt_tokens,
            completion_tokens=max(completion, 1),
        )


def pieces(text: str, size: int = 0) -> list[str]:
    """Split text into streamable pieces whose concatenation is exactly the text:
    four words each, or ``size`` characters each when given."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    words = _WORDS.findall(text)
    step = _STREAM_PIECE_WORDS
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]


def _echo(prompt: Prompt) -> str:
    # The last user message that has text: in the Anthropic dialect a tool
    # result is a user turn too, and echoing it would lose the question.
    text = ""
    for message in reversed(prompt.messages):
        if message.get("role") == "user":
            text = _text_of(message.get("content")).strip()
            if text:
                break
    text = text or "ack"
    return json.dumps({"echo": text}) if prompt.json_mode else text


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return ""


def _cut_at_stop(
    content: str | None, stops: Sequence[str]
) -> tuple[str | None, str | None]:
    """The content up to the earliest stop sequence in it, and that sequence."""
    if not content:
        return content, None
    found = [(content.find(stop), stop) for stop in stops if stop and stop in content]
    if not found:
        return content, None
    position, stop = min(found)
    return content[:position], stop


def _normal_call(call: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept ``{"name", "arguments"}`` or the OpenAI ``{"function": {...}}`` shape."""
    function = call.get("function")
    if isinstance(function, Mapping):
        call = {"id": call.get("id"), **function}
    if not isinstance(call.get("name"), str) or not call["name"]:
        raise ValueError(f"a scripted tool call needs a 'name': {dict(call)!r}")
    return call


def _tool_call(default_id: str, call: Mapping[str, Any]) -> ToolCall:
    arguments = call.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return ToolCall(str(call.get("id") or default_id), str(call["name"]), arguments)
