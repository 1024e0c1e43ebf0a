"""The routing modes through real calls (issue 12): the table of prompts in
every mode, sync and async, answers and streams, checking
``reply.palyra.routing``, the model that served and the ledger's row; then
failover after an enforced choice, and a real HTTP upstream on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import DRIVERS, chat, close, drain, loopback_transports, start_stream
from tests.routing.registry import SHORT, TABLE, registry
from tests.upstream import Upstream, error_reply

pytestmark = [pytest.mark.anyio]

MODES = ["off", "suggest", "dry_run", "enforced"]


def client(**routing: Any) -> tuple[palyra.Palyra, palyra.MemoryLedger]:
    ledger = palyra.MemoryLedger()
    return palyra.Palyra(registry(**routing), ledger=ledger), ledger


def summary(record: palyra.UsageRecord) -> dict[str, Any]:
    assert record.routing is not None
    data = json.loads(record.routing)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "messages", "tier", "chosen"), TABLE)
async def test_calls_in_every_mode_carry_and_record_the_decision(
    driver: str,
    mode: str,
    name: str,
    messages: list[dict[str, Any]],
    tier: str,
    chosen: str,
) -> None:
    c, ledger = client(mode=mode)
    if name == "vision" and mode != "enforced":
        # The requested model serves and cannot see: the call fails, and its
        # record says what routing would have chosen.
        with pytest.raises(palyra.UnsupportedCapabilityError, match="vision"):
            await chat(c, driver, messages)
        (record,) = ledger.records()
        assert record.status == "error"
        assert (
            record.routing is None
            if mode == "off"
            else summary(record)["chosen"] == "large"
        )
        return
    reply = await chat(c, driver, messages)
    info = reply.palyra
    assert info is not None
    serves = chosen if mode == "enforced" else "mid"
    assert info.model == serves
    assert info.requested_model == "mid"  # what the caller (the default) named
    (record,) = ledger.records()
    assert record.model == serves
    assert record.requested_model == "mid"
    if mode == "off":
        assert info.routing is None
        assert record.routing is None
        return
    decision = info.routing
    assert decision is not None
    # The call decided as client.route does (the call itself since added
    # an observed latency to one candidate).
    again = c.route(messages)
    assert decision.model_dump(exclude={"candidates"}) == again.model_dump(
        exclude={"candidates"}
    )
    assert [(x.model, x.reasons) for x in decision.candidates] == [
        (x.model, x.reasons) for x in again.candidates
    ]
    assert (decision.mode, decision.tier, decision.chosen) == (mode, tier, chosen)
    assert decision.serves == serves
    row = summary(record)
    assert row["mode"] == mode
    assert (row["requested"], row["chosen"], row["tier"]) == ("mid", chosen, tier)
    assert row["chosen_provider"] == f"p-{chosen}"
    assert row["score"] == pytest.approx(decision.score, abs=1e-4)
    assert row["reasons"] == list(decision.candidates[0].reasons)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", MODES)
async def test_streams_carry_the_decision_too(driver: str, mode: str) -> None:
    c, ledger = client(mode=mode)
    stream = await start_stream(c, driver, SHORT)
    await drain(stream)
    serves = "small" if mode == "enforced" else "mid"
    assert stream.palyra.model == serves
    (record,) = ledger.records()
    assert record.model == serves
    if mode == "off":
        assert stream.palyra.routing is None
        assert record.routing is None
    else:
        assert stream.palyra.routing is not None
        assert stream.palyra.routing.mode == mode
        assert summary(record)["chosen"] == "small"


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_closed_early_still_records_its_routing(driver: str) -> None:
    c, ledger = client(mode="enforced")
    c.deterministic("p-small").enqueue("one two three four five six")
    stream = await start_stream(c, driver, SHORT)
    await close(stream)
    (record,) = ledger.records()
    assert record.status == "cancelled"
    assert summary(record)["mode"] == "enforced"


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("mode", MODES)
async def test_a_call_s_route_overrides_the_config(driver: str, mode: str) -> None:
    c, _ledger = client()  # off in the config
    reply = await chat(c, driver, SHORT, route=mode.replace("_", "-"))
    assert reply.palyra is not None
    routing = reply.palyra.routing
    assert (routing.mode if routing else "off") == mode
    assert reply.palyra.model == ("small" if mode == "enforced" else "mid")
    off, _ = client(mode="enforced")
    assert (await chat(off, driver, SHORT, route="off")).palyra.routing is None  # type: ignore[union-attr]


@pytest.mark.parametrize("driver", DRIVERS)
async def test_failover_still_applies_after_an_enforced_choice(driver: str) -> None:
    config = registry(mode="enforced")
    config["models"][0]["fallbacks"] = ["mid"]
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(config, ledger=ledger)
    c.deterministic("p-small").enqueue(status=503, error="small is down")
    reply = await chat(c, driver, SHORT)
    assert reply.palyra is not None
    assert reply.palyra.routing is not None
    assert reply.palyra.routing.chosen == "small"
    assert reply.palyra.model == "mid"
    assert [a.model for a in reply.palyra.attempts] == ["small", "mid"]
    (record,) = ledger.records()
    assert (record.model, record.requested_model) == ("mid", "mid")
    assert summary(record)["chosen"] == "small"


@pytest.mark.parametrize("driver", DRIVERS)
async def test_an_enforced_choice_is_still_budgeted(driver: str) -> None:
    config = registry(mode="enforced")
    config["budgets"] = [{"id": "cap", "metric": "usd", "hard_limit": "0.05"}]
    c = palyra.Palyra(config, ledger=palyra.MemoryLedger())
    reply = await chat(c, driver, SHORT)
    assert reply.palyra is not None
    assert reply.palyra.model == "small"
    assert all(s.reserved == 0 for s in c.budgets.status())
    assert c.budgets.status()[0].spent > 0


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_failed_call_is_recorded_with_its_decision(driver: str) -> None:
    c, ledger = client(mode="dry_run")
    c.deterministic("p-mid").enqueue(status=400, error="bad")
    with pytest.raises(palyra.BadRequestError):
        await chat(c, driver, SHORT)
    (record,) = ledger.records()
    assert record.status == "error"
    assert summary(record)["mode"] == "dry_run"


# -- a real upstream over HTTP --------------------------------------------------------


@pytest.fixture(name="http_client")
def http_client_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[palyra.Palyra, palyra.MemoryLedger]]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    provider = {
        "id": "up",
        "kind": "openai",
        "base_url": upstream.base_url,
        "api_key_env": "UP_KEY",
        "max_retries": 0,
    }
    config = {
        "providers": [provider],
        "models": [
            {"id": "gpt-4o-mini", "provider": "up", "tier": "small"},
            {"id": "gpt-4o", "provider": "up", "tier": "large", "fallbacks": []},
        ],
        "defaults": {"chat": "gpt-4o"},
        "routing": {"mode": "enforced"},
    }
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(config, ledger=ledger, **loopback_transports())
    yield c, ledger
    c.close()  # the async tests close their connections themselves


@pytest.mark.parametrize("driver", DRIVERS)
async def test_enforced_routing_against_a_real_http_upstream(
    driver: str,
    upstream: Upstream,
    http_client: tuple[palyra.Palyra, palyra.MemoryLedger],
) -> None:
    c, ledger = http_client
    reply = await chat(c, driver, SHORT)
    assert upstream.requests[-1].json()["model"] == "gpt-4o-mini"  # what was sent
    assert reply.palyra is not None
    assert reply.palyra.routing is not None
    decision = reply.palyra.routing
    assert decision.chosen == "gpt-4o-mini"
    # Priced by the shipped table: gpt-4o-mini is the cheap one.
    mini, big = decision.candidate("gpt-4o-mini"), decision.candidate("gpt-4o")
    assert mini is not None
    assert big is not None
    assert mini.estimated_cost is not None
    assert big.estimated_cost is not None
    assert mini.estimated_cost < big.estimated_cost
    # The observed latency of the first call is there for the next decision.
    assert c.route(SHORT).candidate("gpt-4o-mini").latency_ms is not None  # type: ignore[union-attr]
    # The choice fails: failover moves on from it, over the same server.
    upstream.enqueue(error_reply(500, "boom"))
    moved = await chat(c, driver, SHORT)
    assert moved.palyra is not None
    assert moved.palyra.model == "gpt-4o"
    assert [r.json()["model"] for r in upstream.requests[-2:]] == [
        "gpt-4o-mini",
        "gpt-4o",
    ]
    records = ledger.records()
    assert [summary(r)["chosen"] for r in records] == ["gpt-4o-mini"] * 2
    assert [r.model for r in records] == ["gpt-4o-mini", "gpt-4o"]
    # The key never reaches the decision, its sentence, its repr or the ledger.
    shown = [
        moved.model_dump_json(),
        repr(moved.palyra),
        moved.palyra.routing.explanation if moved.palyra.routing else "",
        *(r.routing or "" for r in records),
        repr(c.route(SHORT)),
    ]
    assert all(FAKE_KEY not in text for text in shown)
    if driver == "async":
        await c.aclose()
