"""``POST /v1/audio/transcriptions``: a multipart upload, parsed as it
arrives within the body limit, answered as the OpenAI API answers (json,
verbose_json or text)."""

from __future__ import annotations

import math
from typing import Any

from .._client import Palyra
from ._errors import Problem
from ._http import Exchange, upstream_headers
from ._multipart import FormPart, MultipartParser, boundary_of

__all__ = ["transcriptions"]

_FORMATS = ("json", "verbose_json", "text")
_TEXT_FIELDS = ("model", "language", "prompt", "response_format")
_REFUSED = {
    "stream": "streamed transcriptions are not served; leave stream unset",
}


async def transcriptions(
    ex: Exchange, client: Palyra, caller: dict[str, Any], limit: int
) -> None:
    """``POST /v1/audio/transcriptions``."""
    parser = MultipartParser(boundary_of(ex.headers.get("content-type")))
    async for chunk in ex.chunks(limit):
        parser.feed(chunk)
    upload, fields, extra = _form(parser.finish())
    fmt = fields.pop("response_format", "json")
    if fmt not in _FORMATS:
        raise Problem(
            400,
            "response_format: must be json, verbose_json or text",
            param="response_format",
            code="invalid_value",
        )
    model = fields.pop("model", None)
    if not model:
        raise Problem(400, "model: is required", param="model", code="missing_field")
    options: dict[str, Any] = dict(caller)
    if extra:
        options["extra_body"] = extra
    reply = await client.atranscribe(
        (upload.filename or "audio", bytes(upload.data)),
        model,
        response_format=fmt,
        temperature=_temperature(fields.pop("temperature", None)),
        **fields,
        **options,
    )
    headers = upstream_headers(reply)
    if fmt == "text":
        body = (reply.text + "\n").encode()
        await ex.answer(
            200,
            body,
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                *[(k.encode(), v.encode()) for k, v in headers.items()],
            ],
        )
        return
    if fmt == "json":
        data: dict[str, Any] = {"text": reply.text}
    else:
        data = reply.model_dump(exclude={"palyra"}, exclude_none=True)
    await ex.answer_json(200, data, headers)


def _form(
    parts: list[FormPart],
) -> tuple[FormPart, dict[str, Any], dict[str, Any]]:
    """The file, the fields palyra reads, and the rest (sent upstream as
    they came: repeated ``name[]`` parts as lists)."""
    upload: FormPart | None = None
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for part in parts:
        if part.name == "file":
            if part.filename is None:
                raise Problem(400, "file: must be a file upload", param="file")
            if upload is not None:
                raise Problem(400, "file: send one file", param="file")
            upload = part
        elif part.filename is not None:
            raise Problem(
                400,
                f"{part.name}: only the file field takes an upload",
                param=part.name,
            )
        elif part.name in _REFUSED:
            if part.text().strip().lower() not in ("", "false"):
                raise Problem(
                    400, f"{part.name}: {_REFUSED[part.name]}", param="stream"
                )
        elif part.name in _TEXT_FIELDS or part.name == "temperature":
            if part.name in fields:
                raise Problem(
                    400, f"{part.name}: is sent more than once", param=part.name
                )
            fields[part.name] = part.text()
        elif part.name.endswith("[]"):
            extra.setdefault(part.name[:-2], []).append(part.text())
        else:
            extra[part.name] = part.text()
    if upload is None:
        raise Problem(400, "file: an audio file is required", param="file")
    if not upload.data:
        raise Problem(400, "file: the audio file is empty", param="file")
    return upload, fields, extra


def _temperature(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise Problem(
            400,
            "temperature: must be a number",
            param="temperature",
            code="invalid_value",
        )
    return value
