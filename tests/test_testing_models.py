"""Model lists and token counts of the palyra.testing mocks:
``provider_models`` / ``aprovider_models`` against both dialects."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

import palyra
from palyra.testing import AnthropicMock, OpenAIMock
from tests.testing_fixtures import HELLO, VERSION, connect

OPENAI_CONFIG = {
    "providers": [{"id": "up", "kind": "openai", "auth_header": "none"}],
    "models": [{"id": "gpt-4o-mini", "provider": "up"}],
}
JAN_2025 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
DRIVERS = ["sync", "async"]


async def models_of(client: palyra.Palyra, driver: str) -> list[palyra.ProviderModel]:
    """provider_models("up") through the chosen driver."""
    if driver == "sync":
        return client.provider_models("up")
    return await client.aprovider_models("up")


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_openai_mock_lists_its_models(driver: str) -> None:
    """GET /models answers the OpenAI list shape; palyra reads every field."""
    mock = OpenAIMock(models=["gpt-4o-mini", "o3"])
    async with palyra.Palyra(
        OPENAI_CONFIG, transport=mock.transport, async_transport=mock.transport
    ) as client:
        models = await models_of(client, driver)
    assert [(m.id, m.provider, m.created, m.owned_by) for m in models] == [
        ("gpt-4o-mini", "up", 1_700_000_000, "system"),
        ("o3", "up", 1_700_000_000, "system"),
    ]
    assert mock.history == []  # a GET has no body to keep


def test_openai_mock_wire_shape_and_default_models() -> None:
    """The raw answer is OpenAI's ``{"object": "list", "data": [...]}``."""
    mock = OpenAIMock()
    with httpx.Client(transport=mock.transport) as http:
        answer = http.get("https://api.openai.com/v1/models").json()
    assert answer["object"] == "list"
    assert [m["id"] for m in answer["data"]] == [
        "gpt-4o-mini",
        "gpt-4o",
        "text-embedding-3-small",
    ]
    assert answer["data"][0] == {
        "id": "gpt-4o-mini",
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "system",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_anthropic_mock_lists_its_models(driver: str) -> None:
    """GET /v1/models answers Anthropic's shape, display names and dates included."""
    mock = AnthropicMock()
    async with connect(mock) as client:
        models = await models_of(client, driver)
    assert [(m.id, m.display_name, m.created) for m in models] == [
        ("claude-sonnet-4-5", "Claude Sonnet 4.5", JAN_2025),
        ("claude-haiku-4-5", "Claude Haiku 4.5", JAN_2025),
        ("claude-opus-4-1", "Claude Opus 4.1", JAN_2025),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_anthropic_model_pages_are_followed(driver: str) -> None:
    """More models than a page holds: palyra follows has_more and last_id."""
    ids = [f"claude-test-{n}" for n in range(150)]
    mock = AnthropicMock(models=ids)
    async with connect(mock) as client:
        models = await models_of(client, driver)
    assert [m.id for m in models] == ids


def test_anthropic_models_wire_shape() -> None:
    """Pages by limit and after_id, with first_id, last_id and has_more."""
    mock = AnthropicMock(models=["claude-a-1", "claude-3-5-haiku-20241022", "c"])
    with httpx.Client(transport=mock.transport, headers=VERSION) as http:
        url = "https://api.anthropic.com/v1/models"
        first = http.get(url, params={"limit": 2}).json()
        rest = http.get(url, params={"after_id": first["last_id"]}).json()
        refused = [
            http.get(url, params={"limit": 0}),
            http.get(url, params={"limit": "many"}),
            http.get(url, params={"after_id": "nope"}),
        ]
    assert first == {
        "data": [
            {
                "type": "model",
                "id": "claude-a-1",
                "display_name": "Claude A 1",
                "created_at": "2025-01-01T00:00:00Z",
            },
            {
                "type": "model",
                "id": "claude-3-5-haiku-20241022",
                "display_name": "Claude 3.5 Haiku",
                "created_at": "2025-01-01T00:00:00Z",
            },
        ],
        "has_more": True,
        "first_id": "claude-a-1",
        "last_id": "claude-3-5-haiku-20241022",
    }
    assert (rest["first_id"], rest["last_id"], rest["has_more"]) == ("c", "c", False)
    assert [r.status_code for r in refused] == [400, 400, 400]
    assert (
        refused[2].json()["error"]["message"]
        == "after_id: no model 'nope' in this list"
    )


def test_an_empty_model_list() -> None:
    """models=[] lists nothing, with null ids, as an empty account would."""
    mock = AnthropicMock(models=[])
    with httpx.Client(transport=mock.transport, headers=VERSION) as http:
        answer = http.get("https://api.anthropic.com/v1/models").json()
    assert answer == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    with connect(mock) as client:
        assert client.provider_models("up") == []


@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
async def test_exact_token_counts(driver: str) -> None:
    """count_tokens(exact=True) asks /v1/messages/count_tokens, which takes
    only a scripted error: the reply scripted for the chat call waits."""
    mock = AnthropicMock()
    mock.enqueue("for the chat")
    async with connect(mock) as client:
        if driver == "sync":
            count = client.count_tokens(HELLO, exact=True)
        else:
            count = await client.acount_tokens(HELLO, exact=True)
        reply = client.chat(HELLO)
        mock.enqueue(status=500, error="counting failed", times=3)
        with pytest.raises(palyra.InternalServerError, match="counting failed"):
            client.count_tokens(HELLO, exact=True)
    assert reply.choices[0].message.content == "for the chat"
    assert reply.usage is not None
    assert count.exact == reply.usage.prompt_tokens
    assert count.exact is not None
    assert count.exact > 0
    assert "max_tokens" not in mock.history[0]
