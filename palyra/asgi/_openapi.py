"""``GET /openapi.json``: an OpenAPI 3.1 document of the ``/v1`` surface.

It describes what the routes take and answer, statuses and error envelopes
included, closely enough for a schema-driven fuzzer or a client generator.
Request schemas say what palyra reads and checks; fields it does not know are
allowed (``additionalProperties``) because they go upstream as sent.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ._schemas import AGENT, PRINCIPAL, component_schemas

__all__ = ["openapi_document"]

Schema = dict[str, Any]
_STRING: Schema = {"type": "string"}
_TEXT: Schema = {"type": "string", "minLength": 1}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_REASONS = {
    "400": "The request is malformed; the error's param names the field.",
    "401": "No API token, or an unknown, revoked or expired one.",
    "403": "The token lacks the route's scope.",
    "404": "An unknown model.",
    "413": "The body is over the server's limit.",
    "429": "A budget hard limit (x-should-retry: false) or a rate limit.",
    "502": "The upstream failed.",
    "503": "No provider is available, or shared state (Redis) is down under"
    " fail_closed; retry-after says when to try again.",
    "504": "The call's deadline passed.",
}


def _errors(statuses: str, schema: str) -> dict[str, Any]:
    return {
        status: {
            "description": _REASONS[status],
            "content": {"application/json": {"schema": _ref(schema)}},
        }
        for status in statuses.split()
    }


def _json_op(
    summary: str,
    request: str,
    answer: str,
    *,
    sse: bool = False,
    anthropic: bool = False,
) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": _ref(answer)}}
    if sse:
        ok["text/event-stream"] = {"schema": _STRING}
    error = "AnthropicError" if anthropic else "Error"
    return {
        "summary": summary,
        "parameters": _caller_headers(),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        },
        "responses": {
            "200": {"description": "The answer.", "content": ok},
            **_errors("400 401 403 404 413 429 502 503 504", error),
        },
    }


def _caller_headers() -> list[dict[str, Any]]:
    described = {
        "x-palyra-agent": ("The agent the call is for (a token's agent wins).", AGENT),
        "x-palyra-session": ("The session the call belongs to.", PRINCIPAL),
        "x-palyra-tags": ("key=value pairs separated by commas.", _STRING),
        "x-palyra-deadline": ("Seconds the whole call may take.", _STRING),
    }
    return [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": text,
            "schema": schema,
        }
        for name, (text, schema) in described.items()
    ]


def _paths() -> dict[str, Any]:
    transcription = _json_op("Transcribe audio", "TranscriptionForm", "Transcription")
    transcription["requestBody"]["content"] = {
        "multipart/form-data": {"schema": _ref("TranscriptionForm")}
    }
    transcription["responses"]["200"]["content"]["text/plain"] = {"schema": _STRING}
    model_id = {"name": "model", "in": "path", "required": True, "schema": _TEXT}
    listing = {
        "200": {
            "description": "The models the token may use.",
            "content": {"application/json": {"schema": _ref("ModelList")}},
        },
        **_errors("401 403", "Error"),
    }
    one = {
        "200": {
            "description": "The model.",
            "content": {"application/json": {"schema": _ref("Model")}},
        },
        **_errors("401 403 404", "Error"),
    }
    return {
        "/v1/chat/completions": {
            "post": _json_op(
                "Chat", "ChatCompletionRequest", "ChatCompletion", sse=True
            )
        },
        "/v1/embeddings": {
            "post": _json_op("Embeddings", "EmbeddingsRequest", "EmbeddingList")
        },
        "/v1/audio/transcriptions": {"post": transcription},
        "/v1/models": {"get": {"summary": "Models", "responses": listing}},
        "/v1/models/{model}": {
            "get": {"summary": "A model", "parameters": [model_id], "responses": one}
        },
        "/v1/messages": {
            "post": _json_op(
                "Messages", "MessagesRequest", "Message", sse=True, anthropic=True
            )
        },
        "/v1/messages/count_tokens": {
            "post": _json_op(
                "Count tokens", "CountTokensRequest", "TokenCount", anthropic=True
            )
        },
    }


def openapi_document(root_path: str, hints: tuple[str, ...]) -> dict[str, Any]:
    """The surface's OpenAPI 3.1 document, its server at ``root_path``
    (``hints``: the routing task hints the client knows)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "palyra /v1",
            "version": __version__,
            "description": "OpenAI- and Anthropic-shaped API over a palyra client.",
        },
        "servers": [{"url": root_path or "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": _paths(),
        "components": {
            "schemas": component_schemas(hints),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
