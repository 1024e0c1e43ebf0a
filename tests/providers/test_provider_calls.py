"""Provider-level calls: the provider's own model list and exact token counts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import palyra

USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
ANTHROPIC = {
    "providers": [{"id": "an", "kind": "anthropic", "api_key_env": "AN_KEY"}],
    "models": [{"id": "claude", "provider": "an", "max_output_tokens": 1024}],
}
OPENAI = {
    "providers": [{"id": "oa", "kind": "openai", "api_key_env": "OA_KEY"}],
    "models": [{"id": "gpt-4o-mini", "provider": "oa"}],
}


class Anthropic:
    """Paginated model list and count_tokens, recording what was asked."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/models":
            after = request.url.params.get("after_id")
            ids = ["m1", "m2"] if after is None else ["m3"]
            data = [{"type": "model", "id": i, "display_name": i.upper()} for i in ids]
            more = after is None
            return httpx.Response(
                200, json={"data": data, "has_more": more, "last_id": ids[-1]}
            )
        return httpx.Response(200, json={"input_tokens": 17})


def _key(name: str) -> Any:
    return lambda provider: f"sk-{name}-test"


def test_anthropic_model_list_follows_pages() -> None:
    """has_more / last_id pages are followed to the end."""
    handler = Anthropic()
    with palyra.Palyra(
        ANTHROPIC, transport=httpx.MockTransport(handler), credentials=_key("an")
    ) as client:
        models = client.provider_models("an")
    assert [m.id for m in models] == ["m1", "m2", "m3"]
    assert models[0].display_name == "M1"
    assert models[0].provider == "an"
    first, second = handler.requests
    assert first.method == "GET"
    assert first.url.params["limit"] == "100"
    assert second.url.params["after_id"] == "m2"
    assert first.headers["x-api-key"] == "sk-an-test"
    assert first.headers["anthropic-version"] == "2023-06-01"


def test_openai_model_list() -> None:
    """OpenAI-compatible providers list /models in one page."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models"
        data = [{"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "x"}]
        return httpx.Response(200, json={"object": "list", "data": data})

    with palyra.Palyra(
        OPENAI, transport=httpx.MockTransport(handler), credentials=_key("oa")
    ) as client:
        [model] = client.provider_models("oa")
    assert (model.id, model.created, model.owned_by) == ("gpt-4o", 1, "x")


def test_unknown_provider_and_bad_listing() -> None:
    """Unknown providers and malformed lists give typed errors."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"models": []})

    with palyra.Palyra(
        OPENAI, transport=httpx.MockTransport(handler), credentials=_key("oa")
    ) as client:
        with pytest.raises(palyra.ModelNotFoundError, match="'nope'"):
            client.provider_models("nope")
        with pytest.raises(palyra.APIResponseValidationError, match="'data'"):
            client.provider_models("oa")


def test_anthropic_exact_count_beside_the_estimate() -> None:
    """count_tokens sends the call's body (no max_tokens) and returns both numbers."""
    handler = Anthropic()
    with palyra.Palyra(
        ANTHROPIC, transport=httpx.MockTransport(handler), credentials=_key("an")
    ) as client:
        count = client.count_tokens(USER, temperature=0.5)
        local = client.count_tokens(USER, exact=False)
    assert count.exact == 17
    assert count.estimate.prompt_tokens > 0
    assert local.exact is None
    assert local.estimate == count.estimate
    [request] = handler.requests
    assert request.url.path == "/v1/messages/count_tokens"
    assert json.loads(request.content) == {
        "model": "claude",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_openai_count_is_the_local_estimate() -> None:
    """Without a count endpoint no request is sent."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with palyra.Palyra(
        OPENAI, transport=httpx.MockTransport(handler), credentials=_key("oa")
    ) as client:
        count = client.count_tokens(USER)
    assert count.exact is None
    assert count.estimate.encoding == "cl100k_base"


@pytest.mark.anyio
async def test_async_twins() -> None:
    """aprovider_models and acount_tokens match the sync results."""
    handler = Anthropic()
    async with palyra.Palyra(
        ANTHROPIC, transport=httpx.MockTransport(handler), credentials=_key("an")
    ) as client:
        models = await client.aprovider_models("an")
        count = await client.acount_tokens(USER)
    assert [m.id for m in models] == ["m1", "m2", "m3"]
    assert count.exact == 17


@pytest.mark.e2e
def test_admin_calls_against_loopback_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model pages and count_tokens through a real HTTP server."""
    from tests.conftest import FAKE_KEY
    from tests.upstream import ANTHROPIC_MODELS, Upstream

    monkeypatch.setenv("AN_KEY", FAKE_KEY)
    with Upstream(api_key=FAKE_KEY) as upstream:
        config = {
            "providers": [
                {
                    "id": "an",
                    "kind": "anthropic",
                    "base_url": upstream.origin,
                    "api_key_env": "AN_KEY",
                }
            ],
            "models": [{"id": "claude-sonnet-4-5", "provider": "an"}],
        }
        with palyra.Palyra(config) as client:
            models = client.provider_models("an")
            count = client.count_tokens(USER)
    assert [m.id for m in models] == [model[0] for model in ANTHROPIC_MODELS]
    assert models[0].display_name == ANTHROPIC_MODELS[0][1]
    assert models[0].created == 1739923200  # 2025-02-19T00:00:00Z
    assert count.exact == 3  # words: "Be brief." + "Hi"
