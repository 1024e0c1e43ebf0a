"""The ``/v1`` surface's OpenAI routes on `httpx.ASGITransport` (issue 13,
first part): chat (JSON and SSE), embeddings, models, tokens and scopes,
caller headers, errors in the OpenAI envelope, limits, disconnects, mounting
and the lifespan."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import palyra
from palyra.asgi import create_app
from tests.asgi.server import leave_mid_stream

pytestmark = [pytest.mark.anyio]

HELLO = [{"role": "user", "content": "Hello there"}]


def config(**extra: Any) -> dict[str, Any]:
    return {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {
                "id": "bot",
                "provider": "local",
                "max_output_tokens": 64,
                "pricing": {"input": "1", "output": "2"},
            },
            {"id": "emb", "provider": "local", "role": "embeddings", "dimensions": 8},
        ],
        **extra,
    }


class Surface:
    """A client, its app, an httpx client on the app, and a token."""

    def __init__(self, home: Path, **app: Any) -> None:
        self.ledger = palyra.MemoryLedger()
        self.client = palyra.Palyra(
            config(**app.pop("cfg", {})), home=home, ledger=self.ledger
        )
        self.app = create_app(self.client, **app)
        self.info, self.secret = self.client.tokens.create("tests")
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://palyra.test"
        )

    def auth(self, secret: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {secret or self.secret}"}

    async def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return await self.http.post(path, json=body, headers={**self.auth(), **headers})


@pytest.fixture(name="surface")
async def surface_fixture(tmp_path: Path) -> AsyncIterator[Surface]:
    made = Surface(tmp_path)
    yield made
    await made.http.aclose()
    await made.client.aclose()


def envelope(response: httpx.Response) -> dict[str, Any]:
    data = response.json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"message", "type", "param", "code"}
    assert response.headers["x-request-id"].startswith("req_")
    return data["error"]  # type: ignore[no-any-return]


async def test_chat_answers_in_the_openai_shape(surface: Surface) -> None:
    response = await surface.post(
        "/v1/chat/completions", {"model": "bot", "messages": HELLO}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert "palyra" not in body
    (record,) = surface.ledger.records()
    assert record.model == "bot"
    assert record.status == "ok"


async def test_a_stream_is_sse_with_done_last(surface: Surface) -> None:
    body = {"model": "bot", "messages": HELLO, "stream": True}
    async with surface.http.stream(
        "POST", "/v1/chat/completions", json=body, headers=surface.auth()
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert not any(c.get("usage") for c in chunks)  # not asked for
    asked = {**body, "stream_options": {"include_usage": True}}
    async with surface.http.stream(
        "POST", "/v1/chat/completions", json=asked, headers=surface.auth()
    ) as response:
        lines = [line async for line in response.aiter_lines() if line]
    assert json.loads(lines[-2][6:])["usage"]["total_tokens"] > 0


async def test_caller_headers_and_the_user_field_reach_the_ledger(
    surface: Surface,
) -> None:
    await surface.post(
        "/v1/chat/completions",
        {"model": "bot", "messages": HELLO, "user": "u-42"},
        **{
            "x-palyra-agent": "planner",
            "x-palyra-session": "s1",
            "x-palyra-tags": "team=search",
        },
    )
    (record,) = surface.ledger.records()
    assert (record.agent, record.session, record.principal) == ("planner", "s1", "u-42")
    assert record.tags == {"team": "search"}


async def test_a_token_bound_to_an_agent_overrides_the_header(tmp_path: Path) -> None:
    surface = Surface(tmp_path)
    _, secret = surface.client.tokens.create("bound", agent="billing")
    await surface.http.post(
        "/v1/chat/completions",
        json={"model": "bot", "messages": HELLO},
        headers={**surface.auth(secret), "x-palyra-agent": "someone-else"},
    )
    assert surface.ledger.records()[0].agent == "billing"
    await surface.http.aclose()
    await surface.client.aclose()


async def test_embeddings_in_float_and_base64(surface: Surface) -> None:
    floats = (
        await surface.post("/v1/embeddings", {"model": "emb", "input": ["a", "b"]})
    ).json()
    assert [len(d["embedding"]) for d in floats["data"]] == [8, 8]
    packed = await surface.post(
        "/v1/embeddings",
        {"model": "emb", "input": ["a", "b"], "encoding_format": "base64"},
    )
    vectors = [
        list(struct.unpack("<8f", base64.b64decode(d["embedding"])))
        for d in packed.json()["data"]
    ]
    expected = [d["embedding"] for d in floats["data"]]
    assert vectors == [pytest.approx(v, rel=1e-6) for v in expected]


async def test_models_lists_what_the_token_may_use(surface: Surface) -> None:
    listed = (await surface.http.get("/v1/models", headers=surface.auth())).json()
    assert listed["object"] == "list"
    assert {m["id"] for m in listed["data"]} == {"bot", "emb"}
    _, chat_only = surface.client.tokens.create("c", scopes=("chat", "models"))
    only = (
        await surface.http.get("/v1/models", headers=surface.auth(chat_only))
    ).json()
    assert [m["id"] for m in only["data"]] == ["bot"]
    one = await surface.http.get("/v1/models/bot", headers=surface.auth())
    assert one.json() == {
        "id": "bot",
        "object": "model",
        "created": 0,
        "owned_by": "local",
    }
    missing = await surface.http.get("/v1/models/nope", headers=surface.auth())
    assert missing.status_code == 404
    assert envelope(missing)["code"] == "model_not_found"


async def test_tokens_are_required_checked_and_scoped(surface: Surface) -> None:
    body = {"model": "bot", "messages": HELLO}
    none = await surface.http.post("/v1/chat/completions", json=body)
    assert none.status_code == 401
    assert envelope(none)["code"] == "missing_api_token"
    assert none.headers["www-authenticate"] == "Bearer"
    bad = await surface.post(
        "/v1/chat/completions", body, authorization="Bearer pk-palyra-x"
    )
    assert bad.status_code == 401
    assert envelope(bad)["type"] == "invalid_api_key"
    _info, embed_only = surface.client.tokens.create("e", scopes=("embeddings",))
    denied = await surface.post(
        "/v1/chat/completions", body, **surface.auth(embed_only)
    )
    assert denied.status_code == 403
    assert envelope(denied)["code"] == "missing_scope"
    surface.client.tokens.revoke(surface.info.id)
    revoked = await surface.post("/v1/chat/completions", body)
    assert revoked.status_code == 401
    assert envelope(revoked)["code"] == "revoked_api_token"
    assert surface.ledger.records() == []  # nothing was called


async def test_a_token_s_rate_limit_is_429_with_retry_after(surface: Surface) -> None:
    _, limited = surface.client.tokens.create("slow", rate_limit=2)
    body = {"model": "bot", "messages": HELLO}
    for _ in range(2):
        ok = await surface.post("/v1/chat/completions", body, **surface.auth(limited))
        assert ok.status_code == 200
    refused = await surface.post("/v1/chat/completions", body, **surface.auth(limited))
    assert refused.status_code == 429
    assert envelope(refused)["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_budget_block_is_429_insufficient_quota(tmp_path: Path) -> None:
    surface = Surface(
        tmp_path, cfg={"budgets": [{"id": "cap", "hard_limit": "0.00000001"}]}
    )
    refused = await surface.post(
        "/v1/chat/completions", {"model": "bot", "messages": HELLO}
    )
    assert refused.status_code == 429
    error = envelope(refused)
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert refused.headers["x-should-retry"] == "false"
    await surface.http.aclose()
    await surface.client.aclose()


BAD_BODIES: list[tuple[Any, int, str | None]] = [
    ({"messages": HELLO}, 400, "model"),
    ({"model": 3, "messages": HELLO}, 400, "model"),
    ({"model": "bot"}, 400, "messages"),
    ({"model": "bot", "messages": "hi"}, 400, "messages"),
    ({"model": "bot", "messages": []}, 400, "messages"),
    ({"model": "bot", "messages": [{"role": "wizard", "content": "x"}]}, 400, None),
    ({"model": "bot", "messages": HELLO, "stream": "yes"}, 400, "stream"),
    ({"model": "bot", "messages": HELLO, "temperature": "hot"}, 400, "temperature"),
    ({"model": "bot", "messages": HELLO, "timeout": 3}, 400, "timeout"),
    ({"model": "nope", "messages": HELLO}, 404, "model"),
    ({"model": "emb", "messages": HELLO}, 400, "model"),
    ([1, 2], 400, None),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD_BODIES)
async def test_bad_input_is_never_a_500(
    surface: Surface, body: Any, status: int, param: str | None
) -> None:
    response = await surface.post("/v1/chat/completions", body)
    assert response.status_code == status, response.text
    error = envelope(response)
    if param is not None:
        assert error["param"] == param


async def test_invalid_json_unknown_routes_and_methods(surface: Surface) -> None:
    broken = await surface.http.post(
        "/v1/chat/completions", content=b"{not json", headers=surface.auth()
    )
    assert broken.status_code == 400
    assert envelope(broken)["code"] == "invalid_json"
    missing = await surface.http.get("/v1/nothing", headers=surface.auth())
    assert missing.status_code == 404
    wrong = await surface.http.get("/v1/chat/completions", headers=surface.auth())
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


async def test_a_body_over_the_limit_is_413_while_it_is_read(tmp_path: Path) -> None:
    surface = Surface(tmp_path, max_body_bytes=1000)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b" " * 100  # never a content-length: read as it comes

    response = await surface.http.post(
        "/v1/chat/completions", content=chunks(), headers=surface.auth()
    )
    assert response.status_code == 413
    assert envelope(response)["code"] == "request_too_large"
    declared = await surface.post(
        "/v1/chat/completions",
        {"model": "bot", "messages": [{"role": "user", "content": "x" * 2000}]},
    )
    assert declared.status_code == 413
    await surface.http.aclose()
    await surface.client.aclose()


async def test_an_unexpected_error_is_a_500_envelope_without_a_stack(
    surface: Surface, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals sk-do-not-show")

    monkeypatch.setattr(surface.client, "achat", broken)
    response = await surface.post(
        "/v1/chat/completions", {"model": "bot", "messages": HELLO}
    )
    assert response.status_code == 500
    error = envelope(response)
    assert response.headers["x-request-id"] in error["message"]
    assert "sk-do-not-show" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" in caplog.text  # the stack goes to the log


async def test_no_auth_mode_serves_without_a_token(tmp_path: Path) -> None:
    surface = Surface(tmp_path, require_auth=False)
    response = await surface.http.post(
        "/v1/chat/completions", json={"model": "bot", "messages": HELLO}
    )
    assert response.status_code == 200
    await surface.http.aclose()
    await surface.client.aclose()


async def test_it_mounts_under_a_root_path(tmp_path: Path) -> None:
    client = palyra.Palyra(config(), home=tmp_path, ledger=False)
    app = create_app(client, require_auth=False)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, root_path="/llm"), base_url="http://t"
    )
    response = await http.get("/llm/v1/models")
    assert response.status_code == 200
    await http.aclose()
    await client.aclose()


async def test_cors_preflight_and_headers(tmp_path: Path) -> None:
    surface = Surface(tmp_path, cors=["https://app.example"])
    pre = await surface.http.options(
        "/v1/chat/completions",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    other = await surface.http.get(
        "/v1/models", headers={**surface.auth(), "origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    await surface.http.aclose()
    await surface.client.aclose()


async def test_the_lifespan_closes_the_client(tmp_path: Path) -> None:
    client = palyra.Palyra(config(), home=tmp_path, ledger=False)
    app = create_app(client)
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    with pytest.raises(palyra.ClientClosedError):
        await client.achat(HELLO)


def test_create_app_checks_its_arguments(tmp_path: Path) -> None:
    client = palyra.Palyra(home=tmp_path, ledger=False)
    with pytest.raises(ValueError, match="max_body_bytes"):
        create_app(client, max_body_bytes=0)
    client.close()


def test_import_palyra_does_not_import_the_surface() -> None:
    import subprocess
    import sys

    code = "import sys, palyra; palyra.Palyra(); print('palyra.asgi' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


async def test_a_client_that_leaves_mid_stream_cancels_the_call(
    surface: Surface,
) -> None:

    surface.client.deterministic().enqueue(" ".join(f"w{i}" for i in range(200)))
    body = json.dumps({"model": "bot", "messages": HELLO, "stream": True}).encode()
    written = await leave_mid_stream(
        surface.app, "/v1/chat/completions", surface.secret, body, b"data: "
    )
    assert b"[DONE]" not in written
    (record,) = surface.ledger.records()
    assert record.status == "cancelled"


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "1e9"])
async def test_a_bad_deadline_header_is_400(surface: Surface, value: str) -> None:
    body = {"model": "bot", "messages": HELLO}
    refused = await surface.post(
        "/v1/chat/completions", body, **{"x-palyra-deadline": value}
    )
    assert refused.status_code == 400
    assert "x-palyra-deadline" in envelope(refused)["message"]
    ok = await surface.post("/v1/chat/completions", body, **{"x-palyra-deadline": "5"})
    assert ok.status_code == 200


async def test_an_answer_palyra_cannot_read_is_a_502_not_a_500() -> None:
    """JSON mode, and a stop sequence that cuts the answer short: the
    upstream's answer is not JSON; the caller hears the upstream failed
    (found by the property-based fuzzer)."""
    import httpx

    client = palyra.Palyra(ledger=False)
    app = create_app(client, require_auth=False)
    body = {
        "model": "deterministic-chat",
        "messages": [{"role": "user", "content": ""}],
        "response_format": {"type": "json_object"},
        "stop": "a",
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://palyra"
    ) as http:
        r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "bad_upstream_answer"
    await client.aclose()
