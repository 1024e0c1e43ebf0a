"""Assembling streamed chunks into one `ChatCompletion`.

Every dialect's stream parser emits OpenAI-shaped chunks and feeds them here,
so content, refusals and tool calls (pieces joined by ``index``) are put
together by one piece of code whatever the upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    CompletionUsage,
    Function,
    ToolCall,
)

__all__: list[str] = []


@dataclass(slots=True)
class _ToolCallState:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _ChoiceState:
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallState] = field(default_factory=dict)
    logprobs: list[Any] = field(default_factory=list)
    finish_reason: str | None = None


class ChunkAccumulator:
    """Collects chunks; `completion` gives the answer they add up to."""

    __slots__ = ("_choices", "chunks", "created", "fingerprint", "id", "model", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self.fingerprint: str | None = None
        self.usage: CompletionUsage | None = None
        self.chunks = 0
        self._choices: dict[int, _ChoiceState] = {}

    @property
    def finished(self) -> bool:
        """Whether every choice seen so far has a finish reason."""
        states = self._choices.values()
        return bool(states) and all(s.finish_reason is not None for s in states)

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Fold one chunk in."""
        self.chunks += 1
        self.id = self.id or chunk.id
        self.model = self.model or chunk.model
        self.created = self.created or chunk.created
        self.fingerprint = self.fingerprint or chunk.system_fingerprint
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _ChoiceState()
            delta = choice.delta
            if delta.content:
                state.content.append(delta.content)
            if delta.refusal:
                state.refusal.append(delta.refusal)
            extra = delta.model_extra
            if extra and extra.get("reasoning_content"):
                state.reasoning.append(extra["reasoning_content"])
            if delta.tool_calls:
                for piece in delta.tool_calls:
                    call = state.tool_calls.get(piece.index)
                    if call is None:
                        call = state.tool_calls[piece.index] = _ToolCallState()
                    if piece.id:
                        call.id = piece.id
                    if piece.function is not None:
                        if piece.function.name:
                            call.name += piece.function.name
                        if piece.function.arguments:
                            call.arguments.append(piece.function.arguments)
            if choice.logprobs and isinstance(choice.logprobs, dict):
                state.logprobs.append(choice.logprobs)
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason

    def completion(self) -> ChatCompletion:
        """The `ChatCompletion` the chunks so far add up to."""
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            system_fingerprint=self.fingerprint,
            usage=self.usage,
            choices=[
                _choice(index, state) for index, state in sorted(self._choices.items())
            ],
        )


def _choice(index: int, state: _ChoiceState) -> Choice:
    tool_calls = [
        ToolCall(
            id=c.id, function=Function(name=c.name, arguments="".join(c.arguments))
        )
        for _, c in sorted(state.tool_calls.items())
    ]
    message = ChatCompletionMessage(
        content="".join(state.content) if state.content else None,
        refusal="".join(state.refusal) if state.refusal else None,
        tool_calls=tool_calls or None,
    )
    if state.reasoning:
        message.reasoning_content = "".join(state.reasoning)  # type: ignore[attr-defined]
    logprobs = None
    if state.logprobs:
        logprobs = {
            key: [item for part in state.logprobs for item in (part.get(key) or [])]
            for key in ("content", "refusal")
        }
    return Choice(
        index=index,
        message=message,
        finish_reason=state.finish_reason,
        logprobs=logprobs,
    )
