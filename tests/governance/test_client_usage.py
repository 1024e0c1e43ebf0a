"""Usage and cost on every reply, and one ledger record per call, through a
real client: the loopback upstream (OpenAI dialect, priced by the shipped
defaults or the config) and the offline deterministic provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import (
    DRIVERS,
    chat,
    drain,
    loopback_transports,
    start_stream,
    upstream_config,
)
from tests.upstream import Reply, Upstream, error_reply

pytestmark = [pytest.mark.anyio]

USER = [{"role": "user", "content": "three words here"}]
M = Decimal(1_000_000)
# gpt-4o-mini in the shipped table: $0.15 in, $0.075 cached, $0.60 out per 1M.
IN, CACHED, OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")


@pytest.fixture(name="client")
async def client_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, driver: str
) -> AsyncIterator[palyra.Palyra]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client = palyra.Palyra(
        upstream_config(upstream.base_url),
        ledger=palyra.MemoryLedger(),
        **loopback_transports(),
    )
    yield client
    if driver == "async":
        await client.aclose()
    else:
        client.close()


def answer(usage: dict[str, Any]) -> Reply:
    return Reply(
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    )


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_reply_carries_usage_and_its_exact_cost(
    client: palyra.Palyra, upstream: Upstream, driver: str
) -> None:
    upstream.enqueue(
        answer(
            {
                "prompt_tokens": 1000,
                "completion_tokens": 120,
                "total_tokens": 1120,
                "prompt_tokens_details": {"cached_tokens": 800},
                "completion_tokens_details": {"reasoning_tokens": 20},
            }
        )
    )
    reply = await chat(client, driver, USER)
    info = reply.palyra
    assert info is not None
    assert info.usage is not None
    assert info.cost is not None
    usage, cost = info.usage, info.cost
    assert (usage.input_uncached, usage.cache_read, usage.output) == (200, 800, 120)
    assert (usage.reasoning, usage.estimated) == (20, False)
    # The cached 800 at the cached rate, never at the full one; reasoning is
    # inside the 120 output tokens and billed once.
    expected = (200 * IN + 800 * CACHED + 120 * OUT) / M
    assert cost.total == expected
    assert (cost.unpriced, cost.currency) == (False, "USD")
    assert cost.price is not None
    assert cost.price.model == "gpt-4o-mini"
    [record] = client.usage.records()
    assert record.cost_total == expected
    assert (record.input_uncached, record.cache_read, record.output) == (200, 800, 120)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_carries_usage_and_cost_at_its_end(
    client: palyra.Palyra, upstream: Upstream, driver: str
) -> None:
    stream = await start_stream(client, driver, USER)
    await drain(stream)
    usage, cost = stream.palyra.usage, stream.palyra.cost
    assert usage is not None
    assert cost is not None
    reported = stream.completion.usage if stream.completion else None
    assert reported is not None  # the caller did not ask; palyra did
    assert usage.input_uncached == reported.prompt_tokens
    assert usage.output == reported.completion_tokens
    assert cost.total == (usage.input_uncached * IN + usage.output * OUT) / M
    [record] = client.usage.records()
    assert (record.status, record.cost_total) == ("ok", cost.total)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_one_record_per_call_says_who_what_and_how(
    client: palyra.Palyra, upstream: Upstream, driver: str
) -> None:
    bound = client.bind(agent="support", session="s-1", tags={"team": "cx"})
    await chat(bound, driver, USER, principal="user:42")
    await chat(bound, driver, USER, tags={"run": "7"})
    first, second = client.usage.records()
    assert (first.agent, first.session, first.principal) == (
        "support",
        "s-1",
        "user:42",
    )
    assert first.tags == {"team": "cx"}
    assert second.tags == {"team": "cx", "run": "7"}
    assert second.principal is None
    for rec in (first, second):
        assert (rec.provider, rec.model, rec.requested_model) == (
            "up",
            "gpt-4o-mini",
            "gpt-4o-mini",
        )
        assert (rec.status, rec.error_class, rec.attempts) == ("ok", None, 1)
        assert rec.auth_profile is None  # an environment key, not a profile
        assert rec.started_at <= rec.finished_at
        assert rec.latency_ms > 0
    assert first.started_at <= second.started_at


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_failed_call_is_recorded_with_its_error(
    client: palyra.Palyra, upstream: Upstream, driver: str
) -> None:
    upstream.enqueue(error_reply(400, "bad things"))
    with pytest.raises(palyra.BadRequestError):
        await chat(client, driver, USER, agent="a1")
    [record] = client.usage.records()
    assert (record.status, record.error_class) == ("error", "BadRequestError")
    assert (record.agent, record.attempts, record.output) == ("a1", 1, 0)
    # Nothing was billed: exactly $0, not "unpriced".
    assert (record.cost_total, record.unpriced) == (Decimal(0), False)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_closed_early_is_recorded_as_cancelled_and_estimated(
    client: palyra.Palyra, upstream: Upstream, driver: str
) -> None:
    stream = await start_stream(
        client, driver, [{"role": "user", "content": "one two three four five"}]
    )
    if isinstance(stream, palyra.AsyncStream):
        await stream.aclose()
    else:
        stream.close()
    usage = stream.palyra.usage
    assert usage is not None
    assert usage.estimated
    assert usage.input_uncached > 0
    assert stream.palyra.cost is not None
    assert stream.palyra.cost.estimated
    [record] = client.usage.records()
    assert (record.status, record.estimated) == ("cancelled", True)
    assert record.cost_total == stream.palyra.cost.total


def test_an_unpriced_model_costs_none_never_zero() -> None:
    client = palyra.Palyra(ledger=palyra.MemoryLedger())
    reply = client.chat(USER)
    assert reply.palyra is not None
    assert reply.palyra.cost is not None
    cost = reply.palyra.cost
    assert (cost.total, cost.unpriced, cost.price) == (None, True, None)
    [record] = client.usage.records()
    assert (record.cost_total, record.unpriced) == (None, True)
    [group] = client.usage.totals("model")
    assert (group.cost_total, group.unpriced_calls) == (None, 1)


def deterministic(price: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"id": "bot", "provider": "local"}
    if price is not None:
        model["pricing"] = price
    return {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [model],
        **extra,
    }


def test_a_model_entry_price_with_a_fee_per_request() -> None:
    config = deterministic({"input": "2", "output": "8", "per_request": "0.001"})
    client = palyra.Palyra(config, ledger=palyra.MemoryLedger())
    reply = client.chat(USER)
    assert reply.usage is not None
    assert reply.palyra
    assert reply.palyra.cost
    tokens_in, tokens_out = reply.usage.prompt_tokens, reply.usage.completion_tokens
    expected = (tokens_in * 2 + tokens_out * 8) / M + Decimal("0.001")
    assert reply.palyra.cost.total == expected
    assert reply.palyra.cost.price is not None
    assert reply.palyra.cost.price.source == "config"


def test_the_price_table_file_is_read_on_the_first_call(tmp_path: Any) -> None:
    table = tmp_path / "prices.toml"
    config = deterministic(None, pricing={"table": str(table)})
    client = palyra.Palyra(config, ledger=palyra.MemoryLedger())  # no file yet
    table.write_text(
        '[[prices]]\nmodel = "bot"\ninput = 1.25\noutput = "5"\n'
        "effective_from = 2020-01-01T00:00:00Z\n"
    )
    reply = client.chat(USER)
    assert reply.usage is not None
    assert reply.palyra
    assert reply.palyra.cost
    expected = (
        reply.usage.prompt_tokens * Decimal("1.25") + reply.usage.completion_tokens * 5
    ) / M
    assert reply.palyra.cost.total == expected  # 1.25 exactly, not a float
    assert reply.palyra.cost.price
    assert "prices.toml" in reply.palyra.cost.price.source


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[prices]]\nmodel = "bot"\ninput = -1\noutput = 1\n', "prices[0].input"),
        ('[[prices]]\nmodel = "bot"\noutput = 1\n', "prices[0].input"),
        ('[[prices]]\nmodel = "bot"\ninput = 1\noutput = 1\ncolour = 1\n', "colour"),
        ("[[prices]\n", "not valid TOML"),
        ("[other]\nx = 1\n", "unknown table 'other'"),
    ],
)
def test_a_bad_price_table_is_a_config_error_naming_the_entry(
    tmp_path: Any, text: str, named: str
) -> None:
    table = tmp_path / "prices.toml"
    table.write_text(text)
    client = palyra.Palyra(
        deterministic(None, pricing={"table": str(table)}), ledger=False
    )
    with pytest.raises(palyra.ConfigError) as caught:
        client.chat(USER)
    assert caught.value.errors[0][0] == "pricing.table"
    assert named in str(caught.value)
    assert str(table) in str(caught.value)


def test_a_missing_price_table_names_its_path(tmp_path: Any) -> None:
    table = tmp_path / "nowhere.toml"
    client = palyra.Palyra(
        deterministic(None, pricing={"table": str(table)}), ledger=False
    )
    with pytest.raises(palyra.ConfigError, match=r"nowhere\.toml: cannot be read"):
        client.chat(USER)


def test_runs_give_each_record_the_price_of_its_own_time() -> None:
    config = deterministic(
        None,
        pricing={"defaults": False},
    )
    config["models"] = [
        {
            "id": "bot",
            "provider": "local",
            "pricing": {
                "input": "1",
                "output": "1",
                "effective_until": datetime(2026, 6, 1, tzinfo=UTC),
            },
        },
        {
            "id": "bot-new",
            "provider": "local",
            "upstream_model": "bot",
            "pricing": {
                "input": "3",
                "output": "3",
                "effective_from": datetime(2026, 6, 1, tzinfo=UTC),
            },
        },
    ]
    ledger = palyra.MemoryLedger()
    client = palyra.Palyra(config, ledger=ledger)
    for when in (
        datetime(2026, 5, 31, 23, tzinfo=UTC),
        datetime(2026, 6, 2, tzinfo=UTC),
    ):
        ledger.record(
            palyra.UsageRecord(
                started_at=when,
                finished_at=when + timedelta(seconds=1),
                provider="local",
                model="bot",
                input_uncached=1_000_000,
            )
        )
    old, new = client.usage.runs()
    assert old.price is not None
    assert old.price.input == 1
    assert new.price is not None
    assert new.price.input == 3
    assert (old.cost.total, new.cost.total) == (Decimal(1), Decimal(3))


@pytest.mark.parametrize("driver", DRIVERS)
async def test_usage_queries_and_their_async_twins_agree(driver: str) -> None:
    client = palyra.Palyra(
        deterministic({"input": "1", "output": "1"}), ledger=palyra.MemoryLedger()
    )
    for agent in ("a", "b", "a"):
        await chat(client, driver, USER, agent=agent)
    by_agent = client.usage.totals("agent")
    assert [(t["agent"], t.calls) for t in by_agent] == [("a", 2), ("b", 1)]
    assert await client.usage.atotals("agent") == by_agent
    assert await client.usage.arecords(agent="b") == client.usage.records(agent="b")
    assert len(await client.usage.aruns()) == 3
    today = datetime.now(UTC).astimezone().date().isoformat()
    [day] = client.usage.totals(("day", "model"), tz="UTC")
    assert day.calls == 3
    assert day["model"] == "bot"
    assert day["day"] in {today, datetime.now(UTC).date().isoformat()}
    assert (await client.usage.ahealth()).ok
    # a page, newest first: the ledger's own LIMIT and OFFSET
    every = client.usage.records()
    newest = client.usage.records(limit=2, newest_first=True)
    assert newest == every[::-1][:2]
    assert (
        await client.usage.arecords(limit=1, offset=1, agent="a")
        == [r for r in every if r.agent == "a"][1:2]
    )


def test_a_ledger_of_the_apps_own_without_paging_is_paged_for_it() -> None:
    class OldLedger:  # the UsageLedger protocol as it was before paging
        def __init__(self) -> None:
            self.kept = palyra.MemoryLedger()

        def record(self, rec: Any) -> None:
            self.kept.record(rec)

        def records(self, since: Any = None, until: Any = None, **filters: Any) -> Any:
            assert "page" not in filters
            return self.kept.records(since, until, **filters)

        def totals(self, *args: Any, **kwargs: Any) -> Any:
            return self.kept.totals(*args, **kwargs)

        def health(self) -> Any:
            return self.kept.health()

        def close(self) -> None:
            pass

    client = palyra.Palyra(
        deterministic({"input": "1", "output": "1"}), ledger=OldLedger()
    )
    for agent in ("a", "b", "c"):
        client.chat(USER, agent=agent)
    every = client.usage.records()
    assert client.usage.records(limit=2, newest_first=True) == every[::-1][:2]
    assert client.usage.records(limit=1, offset=1) == every[1:2]


def test_bad_usage_queries_are_typed_errors_naming_the_fault() -> None:
    client = palyra.Palyra(ledger=palyra.MemoryLedger())
    with pytest.raises(palyra.InvalidRequestError, match="tag:<key>"):
        client.usage.totals("tag")
    with pytest.raises(palyra.InvalidRequestError, match="colour"):
        client.usage.records(colour="red")
    with pytest.raises(palyra.InvalidRequestError, match="Mars/Olympus"):
        client.usage.totals("day", tz="Mars/Olympus")
    with pytest.raises(palyra.InvalidRequestError, match="timezone"):
        client.usage.records(since=datetime(2026, 1, 1))  # noqa: DTZ001 (naive on purpose)
    with pytest.raises(palyra.InvalidRequestError, match="limit"):
        client.usage.records(limit=-5)
    with pytest.raises(palyra.InvalidRequestError, match="offset"):
        client.usage.records(offset="10")  # type: ignore[arg-type]


def test_a_client_without_a_ledger_keeps_nothing_and_says_so(tmp_path: Any) -> None:
    client = palyra.Palyra(home=tmp_path, ledger=False)
    reply = client.chat(USER)
    assert reply.palyra is not None
    assert reply.palyra.usage is not None
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(palyra.LedgerError, match="ledger=False"):
        client.usage.records()
    assert client.usage.health().ok
