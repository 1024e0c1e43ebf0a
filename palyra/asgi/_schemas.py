"""The JSON Schemas of ``/openapi.json``: what each route takes and answers.

Request schemas say what palyra reads and checks, tightly enough that a body
they accept is one palyra serves (an optional field sent as null counts as
absent). Fields palyra does not know are allowed, because they go upstream as
sent.
"""

from __future__ import annotations

from typing import Any

from .._core import AGENT_ID, OPAQUE_ID

__all__ = ["AGENT", "PRINCIPAL", "component_schemas"]

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_TEXT: Schema = {"type": "string", "minLength": 1}
_WORDS: Schema = {"type": "string", "pattern": r"\S"}  # not blank
_BOOL: Schema = {"type": "boolean"}
_NUMBER: Schema = {"type": "number"}  # ranges are the upstream's to check
_INT: Schema = {"type": "integer"}
_POSITIVE: Schema = {"type": "integer", "minimum": 1}
_OBJECT: Schema = {"type": "object"}
AGENT: Schema = {"type": "string", "pattern": f"^{AGENT_ID.pattern}$"}
# who the call is for (user, safety_identifier, metadata.user_id)
PRINCIPAL: Schema = {"type": "string", "pattern": f"^{OPAQUE_ID.pattern}$"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(items: Schema, least: int = 0) -> Schema:
    return {"type": "array", "items": items, "minItems": least}


def _obj(required: list[str], *, extra: bool = True, **properties: Schema) -> Schema:
    return _props(required, properties, extra=extra)


def _props(required: list[str], properties: Schema, *, extra: bool = True) -> Schema:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": extra,
    }


def _kind(
    kind: str, required: list[str] | None = None, /, **properties: Schema
) -> Schema:
    """An object told apart by its ``type``."""
    return _props(["type", *(required or [])], {"type": {"const": kind}, **properties})


def _chat_message() -> Schema:
    text = _kind("text", ["text"], text=_STRING)
    part = {
        "oneOf": [
            text,
            _kind("image_url", ["image_url"], image_url=_obj(["url"], url=_TEXT)),
            _kind(
                "input_audio",
                ["input_audio"],
                input_audio=_obj(["data", "format"], data=_STRING, format=_STRING),
            ),
        ]
    }
    call = _obj(
        ["id", "type", "function"],
        id=_TEXT,
        type={"const": "function"},
        function=_obj(["name", "arguments"], name=_TEXT, arguments=_STRING),
    )
    said = {"anyOf": [_STRING, _list(part)]}
    return {
        "oneOf": [
            _obj(
                ["role", "content"],
                role={"enum": ["system", "developer"]},
                content={"anyOf": [_STRING, _list(text)]},
                name=_STRING,
            ),
            _obj(
                ["role", "content"], role={"const": "user"}, content=said, name=_STRING
            ),
            _obj(
                ["role"],
                role={"const": "assistant"},
                content={"anyOf": [_STRING, _list(text), {"type": "null"}]},
                tool_calls=_list(call),
            ),
            _obj(
                ["role", "content", "tool_call_id"],
                role={"const": "tool"},
                content={"anyOf": [_STRING, _list(text)]},
                tool_call_id=_TEXT,
            ),
        ]
    }


def _openai_requests(hints: tuple[str, ...]) -> dict[str, Schema]:
    function = _obj(["name"], name=_TEXT, description=_STRING, parameters=_OBJECT)
    tool = _obj(["type", "function"], type={"const": "function"}, function=function)
    choice = {
        "anyOf": [
            {"enum": ["none", "auto", "required"]},
            _kind("function", ["function"], function=_obj(["name"], name=_TEXT)),
        ]
    }
    response_format = {
        "oneOf": [
            _kind("text"),
            _kind("json_object"),
            _kind(
                "json_schema",
                ["json_schema"],
                json_schema=_obj(["name"], name=_TEXT, schema=_OBJECT, strict=_BOOL),
            ),
        ]
    }
    chat = _obj(
        ["model", "messages"],
        model=_TEXT,
        messages=_list(_ref("ChatMessage"), 1),
        stream=_BOOL,
        stream_options={
            **_obj([], include_usage=_BOOL),
            "description": "Only with stream: true.",
        },
        temperature=_NUMBER,
        top_p=_NUMBER,
        max_tokens=_POSITIVE,
        max_completion_tokens=_POSITIVE,
        n=_POSITIVE,
        stop={"anyOf": [_STRING, _list(_STRING)]},
        tools=_list(tool),
        tool_choice=choice,
        parallel_tool_calls=_BOOL,
        response_format=response_format,
        seed=_INT,
        presence_penalty=_NUMBER,
        frequency_penalty=_NUMBER,
        user=PRINCIPAL,
        safety_identifier=PRINCIPAL,
        metadata={"type": "object", "additionalProperties": _STRING},
        route={"enum": ["off", "suggest", "dry_run", "dry-run", "enforced"]},
        hint={"enum": list(hints)},
    )
    embeddings = _obj(
        ["model", "input"],
        model=_TEXT,
        input={"anyOf": [_WORDS, _list(_WORDS, 1)]},
        encoding_format={"enum": ["float", "base64"]},
        dimensions={**_POSITIVE, "maximum": 65536},
        user=PRINCIPAL,
    )
    form = _obj(
        ["file", "model"],
        file={
            "type": "string",
            "minLength": 1,
            "contentMediaType": "application/octet-stream",
        },
        model=_TEXT,
        language=_STRING,
        prompt=_STRING,
        response_format={"enum": ["json", "verbose_json", "text"]},
        temperature=_NUMBER,
    )
    return {
        "ChatMessage": _chat_message(),
        "ChatCompletionRequest": chat,
        "EmbeddingsRequest": embeddings,
        "TranscriptionForm": form,
    }


def _openai_answers() -> dict[str, Schema]:
    usage = _obj(
        ["prompt_tokens", "completion_tokens", "total_tokens"],
        prompt_tokens=_INT,
        completion_tokens=_INT,
        total_tokens=_INT,
    )
    completion = _obj(
        ["id", "object", "created", "model", "choices"],
        id=_STRING,
        object={"const": "chat.completion"},
        created=_INT,
        model=_STRING,
        choices=_list(_obj(["index", "message", "finish_reason"], index=_INT)),
        usage={"anyOf": [usage, {"type": "null"}]},
    )
    vector = {"anyOf": [_list(_NUMBER), _STRING]}
    item = _obj(["index", "embedding"], index=_INT, embedding=vector)
    model = _obj(
        ["id", "object", "owned_by"],
        id=_STRING,
        object={"const": "model"},
        created=_INT,
        owned_by=_STRING,
    )
    nullable = {"type": ["string", "null"]}
    error = _obj(
        ["message", "type", "param", "code"],
        extra=False,
        message=_STRING,
        type=_STRING,
        param=nullable,
        code=nullable,
    )
    return {
        "ChatCompletion": completion,
        "EmbeddingList": _obj(
            ["object", "data", "model"],
            object={"const": "list"},
            data=_list(item),
            model=_STRING,
        ),
        "Transcription": _obj(["text"], text=_STRING),
        "Model": model,
        "ModelList": _obj(
            ["object", "data"], object={"const": "list"}, data=_list(_ref("Model"))
        ),
        "Error": _obj(["error"], extra=False, error=error),
    }


def _anthropic_blocks() -> tuple[Schema, Schema, Schema]:
    """The blocks of user turns, of assistant turns, and of a system prompt."""
    text = _kind("text", ["text"], text=_STRING)
    source = {
        "oneOf": [
            _kind("base64", ["media_type", "data"], media_type=_TEXT, data=_TEXT),
            _kind("url", ["url"], url=_TEXT),
        ]
    }
    image = _kind("image", ["source"], source=source)
    result = _kind(
        "tool_result",
        ["tool_use_id"],
        tool_use_id=_TEXT,
        content={"anyOf": [_STRING, _list(text)]},
        is_error=_BOOL,
    )
    use = _kind(
        "tool_use", ["id", "name", "input"], id=_TEXT, name=_TEXT, input=_OBJECT
    )
    user = {"oneOf": [text, image, result]}
    assistant = {"oneOf": [text, use]}
    return user, assistant, text


def _anthropic_requests() -> dict[str, Schema]:
    user, assistant, text = _anthropic_blocks()
    message = {
        "oneOf": [
            _obj(
                ["role", "content"],
                role={"const": "user"},
                content={"anyOf": [_STRING, _list(user, 1)]},
            ),
            _obj(
                ["role", "content"],
                role={"const": "assistant"},
                content={"anyOf": [_STRING, _list(assistant, 1)]},
            ),
        ]
    }
    tool = _obj(
        ["name", "input_schema"], name=_TEXT, description=_STRING, input_schema=_OBJECT
    )
    choice = {
        "oneOf": [
            _kind("auto"),
            _kind("any"),
            _kind("none"),
            _kind("tool", ["name"], name=_TEXT),
        ]
    }
    common: dict[str, Schema] = {
        "model": _TEXT,
        "messages": _list(message, 1),
        "system": {"anyOf": [_STRING, _list(text)]},
        "tools": _list(tool),
        "tool_choice": choice,
    }
    request = _props(
        ["model", "max_tokens", "messages"],
        {
            **common,
            "max_tokens": _POSITIVE,
            "stream": _BOOL,
            "temperature": _NUMBER,
            "top_p": _NUMBER,
            "top_k": _POSITIVE,
            "stop_sequences": _list(_TEXT),
            "metadata": _obj([], user_id=PRINCIPAL),
        },
    )
    return {
        "MessagesRequest": request,
        "CountTokensRequest": _props(["model", "messages"], common),
    }


def _anthropic_answers() -> dict[str, Schema]:
    nullable_int = {"type": ["integer", "null"]}
    answer = _obj(
        ["id", "type", "role", "content", "model", "stop_reason", "usage"],
        id=_STRING,
        type={"const": "message"},
        role={"const": "assistant"},
        content=_list(_obj(["type"], type=_STRING)),
        model=_STRING,
        stop_reason={"type": ["string", "null"]},
        usage=_obj(
            ["input_tokens", "output_tokens"],
            input_tokens=_INT,
            output_tokens=_INT,
            cache_read_input_tokens=nullable_int,
            cache_creation_input_tokens=nullable_int,
        ),
    )
    error = _obj(["type", "message"], extra=False, type=_STRING, message=_STRING)
    return {
        "Message": answer,
        "TokenCount": _obj(["input_tokens"], input_tokens=_INT),
        "AnthropicError": _obj(
            ["type", "error"], extra=False, type={"const": "error"}, error=error
        ),
    }


def component_schemas(hints: tuple[str, ...]) -> dict[str, Schema]:
    """Every named schema of the document (``hints``: the routing task hints
    the client knows)."""
    return {
        **_openai_requests(hints),
        **_openai_answers(),
        **_anthropic_requests(),
        **_anthropic_answers(),
    }
