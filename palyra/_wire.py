"""OpenAI-shaped result models, plus the ``palyra`` field that rides along.

A user who knows the OpenAI SDK reads these the same way
(``resp.choices[0].message.content``, ``resp.usage.prompt_tokens``). Unknown
upstream fields are kept (``extra="allow"``) rather than dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._decision import RoutingDecision
from ._tokens import TokenEstimate
from ._usage import Cost, NormalizedUsage

__all__ = [
    "Attempt",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChunkChoice",
    "CompletionTokensDetails",
    "CompletionUsage",
    "Embedding",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "Function",
    "ModelCapabilities",
    "ModelInfo",
    "PalyraInfo",
    "PromptTokensDetails",
    "ProviderModel",
    "TokenCount",
    "ToolCall",
    "Transcription",
    "TranscriptionSegment",
]


class _Wire(BaseModel):
    # Schemas are built on first use, keeping `import palyra` light.
    model_config = ConfigDict(extra="allow", defer_build=True)


class Attempt(_Wire):
    """One upstream attempt made for a call, or a candidate passed over.

    Attributes:
        outcome: ``success``, ``error``, or ``skipped`` (no request was sent:
            the breaker was open, the credential was missing, or the prompt
            did not fit the model's context window).
        error: The palyra exception class name of a failed or skipped attempt.
        failure: The failure class (``rate_limited``, ``server_error``, ...)
            that decided whether to retry or fail over.
    """

    provider: str
    model: str
    outcome: Literal["success", "error", "skipped"]
    error: str | None = None
    failure: str | None = None
    status_code: int | None = None
    latency_ms: float
    request_id: str | None = None


class PalyraInfo(_Wire):
    """What palyra knows about how a call was served.

    ``provider`` and ``model`` name the candidate that served the call; it
    differs from ``requested_model`` after a failover or when enforced routing
    chose another model. ``agent``, ``session``,
    ``principal`` and ``tags`` say who the call was for (the call's own
    arguments over those of `Palyra.bind`). ``usage_estimated`` is True when
    the upstream reported no usage and palyra counted it locally: the prompt
    from its pre-call estimate, the completion from the answer's text.

    ``usage`` is the call's `NormalizedUsage` (tokens split the way they are
    priced) and ``cost`` its `Cost` (``total`` None when the model has no
    price); both are set once the call is served, for a stream at its end
    (also when the reader closed it early), and stay None with governance
    off.

    ``routing`` is smart routing's `RoutingDecision` for the call (None when
    routing is off for it): what it chose and why, in every mode.
    """

    provider: str
    model: str
    upstream_model: str
    requested_model: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    latency_ms: float = 0.0
    token_estimate: TokenEstimate | None = None
    agent: str | None = None
    session: str | None = None
    principal: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    usage_estimated: bool = False
    usage: NormalizedUsage | None = None
    cost: Cost | None = None
    routing: RoutingDecision | None = None


class Function(_Wire):
    """A function call: its name and JSON-encoded arguments."""

    name: str
    arguments: str


class ToolCall(_Wire):
    """A tool call the model asks the caller to make."""

    id: str
    type: Literal["function"] = "function"
    function: Function


class ChatCompletionMessage(_Wire):
    """The assistant message of one choice."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(_Wire):
    """One completion choice."""

    index: int = 0
    message: ChatCompletionMessage
    finish_reason: str | None = None
    logprobs: Any | None = None


class PromptTokensDetails(_Wire):
    """Breakdown of prompt tokens; cached tokens are part of ``prompt_tokens``.

    ``cache_write_1h_tokens`` is a palyra extension, not OpenAI's: the part of
    ``cache_write_tokens`` written with a 1-hour lifetime (Anthropic's
    ``cache_creation.ephemeral_1h_input_tokens``, priced higher than the
    5-minute writes, which are the rest). None when the upstream gave no
    consistent split.
    """

    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(_Wire):
    """Breakdown of completion tokens; reasoning is part of ``completion_tokens``."""

    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class CompletionUsage(_Wire):
    """Token usage of a chat call, in OpenAI semantics."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletion(_Wire):
    """A chat completion, shaped like OpenAI's, with a ``palyra`` field."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = 0
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    palyra: PalyraInfo | None = None


class ChoiceDeltaToolCallFunction(_Wire):
    """A piece of a streamed function call."""

    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(_Wire):
    """A piece of a streamed tool call; pieces share an ``index``."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(_Wire):
    """What one chunk adds to a choice."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChunkChoice(_Wire):
    """One choice of a streamed chunk."""

    index: int = 0
    delta: ChoiceDelta = Field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: Any | None = None


class ChatCompletionChunk(_Wire):
    """One streamed chunk, shaped like OpenAI's ``chat.completion.chunk``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = 0
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class Embedding(_Wire):
    """One embedding vector, at the position of its input."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class EmbeddingUsage(_Wire):
    """Token usage of an embeddings call."""

    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(_Wire):
    """Embeddings in input order, shaped like OpenAI's, with a ``palyra`` field."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None
    palyra: PalyraInfo | None = None


class TranscriptionSegment(_Wire):
    """A timed segment of a verbose transcription (seconds)."""

    id: int = 0
    start: float = 0.0
    end: float = 0.0
    text: str = ""


class Transcription(_Wire):
    """A transcription; ``language``, ``duration`` and ``segments`` when verbose."""

    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[TranscriptionSegment] | None = None
    palyra: PalyraInfo | None = None


class ModelCapabilities(_Wire):
    """The resolved capabilities of a registry model."""

    streaming: bool
    tools: bool
    json_mode: bool
    vision: bool
    audio: bool


class ModelInfo(_Wire):
    """A registry model as listed by `Palyra.models`."""

    id: str
    object: Literal["model"] = "model"
    owned_by: str
    provider_kind: str
    upstream_model: str
    role: str
    enabled: bool
    is_default: bool
    capabilities: ModelCapabilities
    context_window: int | None = None
    max_output_tokens: int | None = None
    aliases: list[str] = Field(default_factory=list)


class ProviderModel(_Wire):
    """A model as the provider's own model list names it."""

    id: str
    provider: str
    display_name: str | None = None
    created: int | None = None
    owned_by: str | None = None


class TokenCount(_Wire):
    """A prompt's size: palyra's local estimate, and the provider's exact count
    where the provider offers one (Anthropic's ``count_tokens``)."""

    estimate: TokenEstimate
    exact: int | None = None
