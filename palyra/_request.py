"""Caller input, checked once and turned into provider-neutral requests.

Messages and options are OpenAI-shaped. They are validated here, before any
token is counted or byte sent, and what the request *needs* from a model
(vision, tools, JSON mode, audio input) is read off in the same pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypedDict

from ._checks import (
    check_depth,
    check_form_field,
    check_headers,
    check_option,
    check_routing,
    check_text,
    check_tool_calls,
    seconds,
)
from ._config import RoutingMode
from ._exceptions import InvalidRequestError
from ._utils import shown

__all__ = ["ChatOptions", "RequestOptions"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class ChatOptions(TypedDict, total=False):
    """Options accepted by `Palyra.chat` and friends (OpenAI names).

    Everything else an upstream understands goes in ``extra_body``. palyra's
    own: ``route`` (this call's routing mode: ``off``, ``suggest``,
    ``dry_run`` or ``enforced``) and ``hint`` (a task hint for routing, e.g.
    ``classification``), which are never sent upstream.
    """

    tools: Sequence[Mapping[str, Any]]
    tool_choice: str | Mapping[str, Any]
    parallel_tool_calls: bool
    response_format: Mapping[str, Any]
    temperature: float
    top_p: float
    max_tokens: int
    max_completion_tokens: int
    stop: str | Sequence[str]
    seed: int
    n: int
    presence_penalty: float
    frequency_penalty: float
    logit_bias: Mapping[str, int]
    logprobs: bool
    top_logprobs: int
    user: str
    metadata: Mapping[str, str]
    store: bool
    reasoning_effort: str
    service_tier: str
    modalities: Sequence[str]
    audio: Mapping[str, Any]
    prediction: Mapping[str, Any]
    prompt_cache_key: str
    safety_identifier: str
    verbosity: str
    stream_options: Mapping[str, Any]
    route: str
    hint: str
    extra_body: Mapping[str, Any]
    extra_headers: Mapping[str, str]
    timeout: float
    deadline: float
    failover: bool


class RequestOptions(TypedDict, total=False):
    """Options every call accepts (`Palyra.embed` and `Palyra.transcribe` take
    only these; `ChatOptions` adds the OpenAI chat options). ``failover=False``
    keeps the call on the model it names: no other is tried when it fails
    (health probes use it)."""

    extra_body: Mapping[str, Any]
    extra_headers: Mapping[str, str]
    timeout: float
    deadline: float
    failover: bool


_CALL_OPTIONS = frozenset(RequestOptions.__annotations__)
# palyra's own: the routing mode and task hint of a call (never sent upstream).
_ROUTING_OPTIONS = frozenset({"route", "hint"})
_BODY_OPTIONS = (
    frozenset(ChatOptions.__annotations__) - _CALL_OPTIONS - _ROUTING_OPTIONS
)


# palyra sets these itself; letting extra_body replace them breaks the call.
_RESERVED_BODY = {
    "model": "pass it as the model argument",
    "messages": "pass them as the messages argument",
    "input": "pass it as the inputs argument",
    "stream": "call client.stream() or client.astream() for a streamed answer",
    "stream_options": "pass stream_options=... to client.stream() instead",
}
MAX_DIMENSIONS = 65536
"""The largest embedding size a call may ask for (as in a model entry)."""
_MESSAGES_SHAPE = (
    "messages: must be a list of message dicts, e.g."
    " [{'role': 'user', 'content': 'Hello'}]"
)


@dataclass(slots=True)
class Needs:
    """Capabilities a request needs from the model that serves it."""

    vision: bool = False
    tools: bool = False
    json_mode: bool = False
    audio: bool = False
    streaming: bool = False

    def names(self) -> list[str]:
        """The needed capability names, in a stable order."""
        order = ("streaming", "tools", "json_mode", "vision", "audio")
        return [name for name in order if getattr(self, name)]


@dataclass(slots=True)
class CallOptions:
    """Per-call settings that are not part of the upstream body."""

    extra_headers: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    deadline: float | None = None
    failover: bool = True  # False: the requested model only (health probes)


@dataclass(slots=True)
class ChatRequest:
    """A checked chat request, independent of any provider dialect."""

    messages: list[Mapping[str, Any]]
    body: dict[str, Any]
    stream: bool
    needs: Needs
    call: CallOptions
    wants_usage_chunk: bool = False
    # Who the call is for, for upstreams that take an end-user id (Anthropic's
    # metadata.user_id) when the options name none.
    end_user: str | None = None
    route: RoutingMode | None = None  # the call's routing mode, over the config's
    hint: str | None = None  # the call's task hint, for routing

    @property
    def requested_output_tokens(self) -> int:
        """The output budget the caller asked for (0 when unspecified)."""
        value = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        return int(value) if value else 0


@dataclass(slots=True)
class EmbeddingsRequest:
    """A checked embeddings request."""

    inputs: list[str]
    dimensions: int | None
    call: CallOptions


@dataclass(slots=True)
class TranscriptionRequest:
    """A checked transcription request."""

    filename: str
    content: bytes
    content_type: str
    fields: dict[str, Any]
    response_format: Literal["json", "verbose_json", "text"]
    call: CallOptions


def chat_request(
    messages: Iterable[Mapping[str, Any] | Any],
    options: Mapping[str, Any],
    stream: bool,
    end_user: str | None = None,
) -> ChatRequest:
    """Check messages and options and note what the request needs.

    Raises:
        InvalidRequestError: naming the bad message or option.
        TypeError: for an option palyra does not know (use ``extra_body``).
    """
    unknown = set(options) - _BODY_OPTIONS - _CALL_OPTIONS - _ROUTING_OPTIONS
    if "stream" in unknown:
        raise TypeError(
            "stream is not a chat option: call client.stream() (or astream()) for"
            " a streamed answer"
        )
    if unknown:
        names = ", ".join(sorted(unknown))
        raise TypeError(f"unknown chat option(s): {names}; pass them in extra_body")
    needs = Needs(streaming=stream)
    checked = [_check_message(m, i, needs) for i, m in enumerate(_listed(messages))]
    if not checked:
        raise InvalidRequestError("messages: at least one message is required")
    body = {k: v for k, v in options.items() if k in _BODY_OPTIONS}
    for name, value in body.items():
        check_option(name, value)
    if "stream_options" in body and not stream:
        raise InvalidRequestError(
            "stream_options: only for streams (client.stream() or astream())"
        )
    check_depth("messages", checked)
    check_depth("tools", body.get("tools"))
    if body.get("tools"):
        needs.tools = True
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        needs.json_mode = True
    stream_options = body.get("stream_options")
    wants_usage = bool(
        isinstance(stream_options, Mapping) and stream_options.get("include_usage")
    )
    route, hint = check_routing(options.get("route"), options.get("hint"))
    return ChatRequest(
        route=route,
        hint=hint,
        messages=checked,
        body=body,
        stream=stream,
        needs=needs,
        call=call_options(options),
        wants_usage_chunk=wants_usage,
        end_user=end_user,
    )


def call_options(options: Mapping[str, Any], what: str | None = None) -> CallOptions:
    """Pick the per-call settings out of caller options.

    Args:
        options: The caller's keyword options.
        what: The operation whose options are only these (``embed``,
            ``transcribe``): any other name is refused.

    Raises:
        TypeError: ``what`` is given and an option is unknown.
        InvalidRequestError: a bad value.
    """
    unknown = set(options) - _CALL_OPTIONS if what else set()
    if unknown:
        names = ", ".join(sorted(unknown))
        raise TypeError(
            f"unknown {what} option(s): {names}; upstream fields go in extra_body"
        )
    extra_body = options.get("extra_body") or {}
    check_option("extra_body", extra_body)
    check_depth("extra_body", extra_body)
    for name, advice in _RESERVED_BODY.items():
        if name in extra_body:
            raise InvalidRequestError(f"extra_body: {name} is set by palyra; {advice}")
    return CallOptions(
        extra_headers=check_headers(
            "extra_headers", options.get("extra_headers") or {}
        ),
        extra_body=extra_body,
        timeout=seconds("timeout", options.get("timeout")),
        deadline=seconds("deadline", options.get("deadline")),
        failover=_failover(options.get("failover", True)),
    )


def _failover(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(
            f"failover: must be true or false, got {shown(value)}"
        )
    return value


def _listed(messages: Any) -> Iterable[Any]:
    if type(messages) is list:
        return messages
    if isinstance(messages, str | bytes | Mapping) or not isinstance(
        messages, Iterable
    ):
        raise InvalidRequestError(f"{_MESSAGES_SHAPE}; got {type(messages).__name__}")
    return messages


def _check_message(item: Any, index: int, needs: Needs) -> Mapping[str, Any]:
    message: Mapping[str, Any]
    if type(item) is dict or isinstance(item, Mapping):
        message = item
    else:
        dump = getattr(item, "model_dump", None)
        dumped = dump(exclude_none=True) if callable(dump) else None
        if not isinstance(dumped, Mapping):
            raise InvalidRequestError(
                f"messages[{index}]: must be a message dict, got"
                f" {type(item).__name__}; {_MESSAGES_SHAPE}"
            )
        message = dict(dumped)
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidRequestError(
            f"messages[{index}].role: must be one of"
            f" {', '.join(sorted(ROLES - {'function'}))}, got {shown(role)}"
        )
    content = message.get("content")
    if type(content) is str:
        pass  # the common case, settled first
    elif isinstance(content, list):
        for j, part in enumerate(content):
            _check_part(part, f"messages[{index}].content[{j}]", needs)
    elif content is None:
        if role != "assistant":
            raise InvalidRequestError(f"messages[{index}].content: required for {role}")
    elif not isinstance(content, str):
        raise InvalidRequestError(
            f"messages[{index}].content: must be a string or a list of parts"
        )
    tool_call_id = message.get("tool_call_id")
    if role == "tool" and (not isinstance(tool_call_id, str) or not tool_call_id):
        raise InvalidRequestError(
            f"messages[{index}].tool_call_id: required for tool messages"
            f" (a string), got {shown(tool_call_id)}"
        )
    if message.get("tool_calls") is not None:
        check_tool_calls(f"messages[{index}].tool_calls", message["tool_calls"])
    return message


def _check_part(part: Any, path: str, needs: Needs) -> None:
    if not isinstance(part, Mapping):
        raise InvalidRequestError(f"{path}: must be a mapping with a 'type'")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidRequestError(f"{path}.text: must be a string")
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str) or not url:
            raise InvalidRequestError(f"{path}.image_url.url: must be a URL string")
        needs.vision = True
    elif kind == "input_audio":
        needs.audio = True
    elif kind not in ("file", "refusal"):
        raise InvalidRequestError(
            f"{path}.type: unsupported content part {shown(kind)}"
        )


def embeddings_request(
    inputs: str | Sequence[str], dimensions: int | None, options: Mapping[str, Any]
) -> EmbeddingsRequest:
    """Check embedding inputs (1-2048 non-empty strings).

    Raises:
        InvalidRequestError: naming the bad input.
    """
    if isinstance(inputs, str):
        items = [inputs]
    elif isinstance(inputs, Iterable) and not isinstance(inputs, bytes | Mapping):
        items = list(inputs)
    else:
        raise InvalidRequestError(
            f"input: must be a string or a list of strings, got {shown(inputs)}"
        )
    if not items:
        raise InvalidRequestError("input: at least one input is required")
    if len(items) > 2048:
        raise InvalidRequestError("input: at most 2048 inputs per call")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise InvalidRequestError(f"input[{i}]: must be a non-empty string")
    if dimensions is not None and (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 0 < dimensions <= MAX_DIMENSIONS
    ):
        raise InvalidRequestError(
            f"dimensions: must be a positive integer up to {MAX_DIMENSIONS},"
            f" got {shown(dimensions)}"
        )
    return EmbeddingsRequest(items, dimensions, call_options(options, "embed"))


FileInput = str | os.PathLike[str] | bytes | IO[bytes] | tuple[str, bytes | IO[bytes]]


def transcription_request(
    file: FileInput,
    response_format: str,
    fields: Mapping[str, Any],
    options: Mapping[str, Any],
) -> TranscriptionRequest:
    """Read the audio file and check the transcription options.

    Raises:
        InvalidRequestError: for an unreadable or empty file or a bad format.
    """
    if response_format not in ("json", "verbose_json", "text"):
        raise InvalidRequestError(
            "response_format: must be 'json', 'verbose_json' or 'text'"
        )
    given = {k: v for k, v in fields.items() if v is not None}
    for name, value in given.items():
        if name == "temperature":
            check_option(name, value)
        else:
            check_text(name, value)
    call = call_options(options, "transcribe")
    for name, value in call.extra_body.items():
        if not isinstance(name, str):
            raise InvalidRequestError(
                f"extra_body: form field names are strings, got {shown(name)}"
            )
        check_text("extra_body", name)
        check_form_field(f"extra_body.{name}", value)
    filename, content = _read_file(file)
    if not content:
        raise InvalidRequestError("file: the audio file is empty")
    check_text("file", filename)
    return TranscriptionRequest(
        filename=filename,
        content=content,
        content_type=_audio_type(filename),
        fields=given,
        response_format=response_format,  # type: ignore[arg-type]
        call=call,
    )


_FILE_SHAPE = "file: must be a path, bytes, a binary file object or (filename, bytes)"


def _read_file(file: Any) -> tuple[str, bytes]:
    if isinstance(file, tuple):
        if len(file) != 2 or not isinstance(file[0], str):
            raise InvalidRequestError(f"{_FILE_SHAPE}; got another tuple")
        return file[0] or "audio", _content(file[1])
    if isinstance(file, bytes):
        return "audio", file
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        try:
            return path.name, path.read_bytes()
        except OSError as exc:
            raise InvalidRequestError(
                f"file: cannot read {path}: {exc.strerror}"
            ) from None
        except ValueError:  # a NUL character, or a name the OS cannot encode
            raise InvalidRequestError("file: not a valid path") from None
    name = Path(str(getattr(file, "name", "audio"))).name
    return name, _content(file)


def _content(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    read = getattr(data, "read", None)
    content = read() if callable(read) else None
    if not isinstance(content, bytes):
        kind = "a text file" if isinstance(content, str) else type(data).__name__
        raise InvalidRequestError(f"{_FILE_SHAPE}; got {kind}")
    return content


_AUDIO_TYPES = {
    ".mp3": "audio/mpeg",
    ".mpga": "audio/mpeg",
    ".mpeg": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".wav": "audio/wav",
    ".webm": "audio/webm",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
}


def _audio_type(filename: str) -> str:
    return _AUDIO_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")
