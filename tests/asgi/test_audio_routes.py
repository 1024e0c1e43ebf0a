"""``POST /v1/audio/transcriptions`` on `httpx.ASGITransport` (issue 13):
the three answer formats, the token's audio scope, form errors with their
``param``, the size limit enforced while the upload streams in, and the
ledger's record of each call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import palyra
from palyra.asgi import create_app

pytestmark = [pytest.mark.anyio]

AUDIO = b"RIFF" + bytes(range(256)) * 8


def config() -> dict[str, Any]:
    return {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {"id": "bot", "provider": "local"},
            {"id": "ears", "provider": "local", "role": "audio_transcription"},
        ],
    }


class Surface:
    def __init__(self, home: Path, **app: Any) -> None:
        self.ledger = palyra.MemoryLedger()
        self.client = palyra.Palyra(config(), home=home, ledger=self.ledger)
        self.app = create_app(self.client, **app)
        _, self.secret = self.client.tokens.create("tests")
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://palyra.test"
        )

    async def upload(
        self,
        data: dict[str, Any],
        files: Any = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.http.post(
            "/v1/audio/transcriptions",
            data=data,
            files=files if files is not None else {"file": ("clip.wav", AUDIO)},
            headers={
                "authorization": f"Bearer {secret or self.secret}",
                **(headers or {}),
            },
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.client.aclose()


@pytest.fixture(name="surface")
async def surface_fixture(tmp_path: Path) -> AsyncIterator[Surface]:
    made = Surface(tmp_path)
    yield made
    await made.close()


async def test_json_text_and_verbose_json(surface: Surface) -> None:
    plain = await surface.upload({"model": "ears"})
    assert plain.status_code == 200
    assert plain.json() == {"text": f"[{len(AUDIO)} bytes of clip.wav]"}
    assert plain.headers["x-request-id"].startswith("req_")
    text = await surface.upload({"model": "ears", "response_format": "text"})
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == f"[{len(AUDIO)} bytes of clip.wav]\n"
    verbose = await surface.upload(
        {"model": "ears", "response_format": "verbose_json", "language": "fr"}
    )
    body = verbose.json()
    assert body["language"] == "fr"
    assert body["segments"][0]["text"] == body["text"]
    assert "palyra" not in body


async def test_the_form_reaches_the_upstream_and_the_ledger(surface: Surface) -> None:
    backend = surface.client.deterministic()
    answer = await surface.upload(
        {
            "model": "ears",
            "prompt": "names: Ada",
            "temperature": "0.2",
            "timestamp_granularities[]": ["word", "segment"],
        },
        headers={"x-palyra-agent": "scribe"},
    )
    assert answer.status_code == 200, answer.text
    sent = backend.history[-1]
    assert sent["prompt"] == "names: Ada"
    assert float(sent["temperature"]) == 0.2
    record = surface.ledger.records()[-1]
    assert (record.model, record.agent, record.status) == ("ears", "scribe", "ok")


async def test_the_token_needs_the_audio_scope(surface: Surface) -> None:
    _, chat_only = surface.client.tokens.create("chat", scopes=("chat",))
    refused = await surface.upload({"model": "ears"}, secret=chat_only)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_scope"


@pytest.mark.parametrize(
    ("data", "files", "param"),
    [
        ({}, None, "model"),
        ({"model": "ears"}, {"other": ("x.wav", AUDIO)}, "other"),
        ({"model": "ears", "file": "not a file"}, {"other": ("x.wav", AUDIO)}, "file"),
        ({"model": "ears"}, {"file": ("x.wav", b"")}, "file"),
        ({"model": "ears", "response_format": "srt"}, None, "response_format"),
        ({"model": "ears", "temperature": "warm"}, None, "temperature"),
        ({"model": "ears", "temperature": "nan"}, None, "temperature"),
        ({"model": "ears", "stream": "true"}, None, "stream"),
        ({"model": ["ears", "ears"]}, None, "model"),
        ({"model": "bot"}, None, "model"),
    ],
)
async def test_form_errors_name_the_field(
    surface: Surface, data: dict[str, Any], files: Any, param: str
) -> None:
    refused = await surface.upload(data, files)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param


async def test_a_form_without_a_file_is_400(surface: Surface) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\nears\r\n--B--\r\n'
    )
    refused = await surface.http.post(
        "/v1/audio/transcriptions",
        content=body,
        headers={
            "authorization": f"Bearer {surface.secret}",
            "content-type": "multipart/form-data; boundary=B",
        },
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "file"
    assert "required" in refused.json()["error"]["message"]


async def test_an_unknown_model_is_404(surface: Surface) -> None:
    refused = await surface.upload({"model": "nope"})
    assert refused.status_code == 404


async def test_a_body_that_is_not_multipart_is_400(surface: Surface) -> None:
    refused = await surface.http.post(
        "/v1/audio/transcriptions",
        json={"model": "ears"},
        headers={"authorization": f"Bearer {surface.secret}"},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_content_type"


async def test_an_upload_over_the_limit_is_refused_while_it_streams(
    tmp_path: Path,
) -> None:
    surface = Surface(tmp_path, max_body_bytes=64 * 1024)
    request = httpx.Request(
        "POST",
        "http://x.test",
        data={"model": "ears"},
        files={"file": ("big.wav", b"\x00" * 1_000_000)},
    )
    body = request.read()
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for at in range(0, len(body), 4096):
            sent += 4096
            yield body[at : at + 4096]

    refused = await surface.http.post(
        "/v1/audio/transcriptions",
        content=chunks(),  # no content-length: refused on the chunk that passes
        headers={
            "authorization": f"Bearer {surface.secret}",
            "content-type": request.headers["content-type"],
        },
    )
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "request_too_large"
    assert sent <= 64 * 1024 + 4096  # the rest was never read
    assert surface.ledger.records() == []
    await surface.close()
