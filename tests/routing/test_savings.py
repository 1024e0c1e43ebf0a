"""``client.usage.routing_savings`` (issue 12): over dry-run and enforced
records, the cost paid against the requested model's; unpriced records
counted apart; on the real SQLite ledger too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.routing.registry import REASONING, SHORT, VISION, registry

pytestmark = [pytest.mark.anyio]

M = Decimal(1_000_000)
PRICES = {"small": ("0.15", "0.60"), "mid": ("1", "4"), "large": ("5", "25")}


def at(model: str, record: palyra.UsageRecord) -> Decimal:
    """The record's tokens at ``model``'s price in the registry."""
    price_in, price_out = (Decimal(p) for p in PRICES[model])
    return (record.input_uncached * price_in + record.output * price_out) / M


def client(ledger: palyra.UsageLedger, **routing: Any) -> palyra.Palyra:
    return palyra.Palyra(registry(**routing), ledger=ledger)


def test_enforced_savings_compare_what_was_paid_with_the_requested_model() -> None:
    ledger = palyra.MemoryLedger()
    c = client(ledger, mode="enforced")
    for _ in range(3):
        c.chat(SHORT)  # mid requested, small serves
    savings = c.usage.routing_savings()
    records = ledger.records()
    assert (savings.records, savings.priced, savings.unpriced) == (3, 3, 0)
    assert savings.mode is None
    assert savings.paid == savings.routed == sum(at("small", r) for r in records)
    assert savings.baseline == sum(at("mid", r) for r in records)
    assert savings.saved == savings.baseline - savings.routed > 0
    assert savings.saved_share == pytest.approx(float(savings.saved / savings.baseline))


def test_dry_run_savings_price_what_routing_would_have_chosen() -> None:
    ledger = palyra.MemoryLedger()
    c = client(ledger, mode="dry_run")
    c.chat(SHORT)  # mid serves; small would have
    c.chat(REASONING)  # mid serves; large would have: a negative saving
    short, reasoning = ledger.records()
    savings = c.usage.routing_savings(mode="dry_run")
    assert savings.paid == savings.baseline == at("mid", short) + at("mid", reasoning)
    assert savings.routed == at("small", short) + at("large", reasoning)
    assert savings.saved == savings.baseline - savings.routed
    assert c.usage.routing_savings(mode="enforced").records == 0


def test_suggest_and_unrouted_records_are_not_counted() -> None:
    ledger = palyra.MemoryLedger()
    c = client(ledger, mode="suggest")
    c.chat(SHORT)
    c.chat(SHORT, route="off")
    empty = c.usage.routing_savings()
    assert (empty.records, empty.paid, empty.saved, empty.saved_share) == (
        0,
        0,
        0,
        None,
    )


def test_unpriced_records_are_counted_apart() -> None:
    config = registry(mode="enforced")
    del config["models"][1]["pricing"]  # the requested model, mid
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(config, ledger=ledger)
    c.chat(SHORT)  # small serves (priced); the baseline cannot be priced
    c.chat(SHORT, route="dry_run")  # mid serves unpriced
    savings = c.usage.routing_savings()
    assert (savings.records, savings.priced, savings.unpriced) == (2, 0, 2)
    assert savings.paid == savings.baseline == savings.routed == 0


def test_the_span_and_the_mode_filter_records() -> None:
    ledger = palyra.MemoryLedger()
    c = client(ledger, mode="enforced")
    c.chat(SHORT)
    c.chat(SHORT, route="dry_run")
    later = datetime.now(UTC) + timedelta(hours=1)
    assert c.usage.routing_savings(since=later).records == 0
    assert c.usage.routing_savings(until=later).records == 2
    assert c.usage.routing_savings(mode="enforced").records == 1
    with pytest.raises(palyra.InvalidRequestError, match="mode"):
        c.usage.routing_savings(mode="suggest")
    with pytest.raises(palyra.InvalidRequestError):
        c.usage.routing_savings(since=datetime(2026, 1, 1))  # noqa: DTZ001 (naive)


async def test_savings_on_the_sqlite_ledger_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    first = client(palyra.SQLiteLedger(path), mode="enforced")
    first.chat(SHORT)
    await first.achat(SHORT, route="dry_run")
    expected = first.usage.routing_savings()
    first.close()
    again = client(palyra.SQLiteLedger(path))
    savings = await again.usage.arouting_savings()
    assert savings == expected
    assert (savings.records, savings.priced) == (2, 2)
    again.close()


def test_foreign_routing_text_in_a_record_is_ignored() -> None:
    ledger = palyra.MemoryLedger()
    now = datetime.now(UTC)
    for text in ("not json", '["a"]', '{"mode": "enforced"}'):
        ledger.record(
            palyra.UsageRecord(
                started_at=now,
                finished_at=now,
                provider="p-small",
                model="small",
                cost_total=Decimal("0.1"),
                routing=text,
            )
        )
    savings = client(ledger).usage.routing_savings()
    # Only the last is palyra-shaped; it names no models, so it is unpriced.
    assert (savings.records, savings.unpriced) == (1, 1)


def test_calls_only_routing_could_serve_are_counted_apart() -> None:
    ledger = palyra.MemoryLedger()
    c = client(ledger, mode="enforced")
    c.chat(VISION)  # mid (requested) takes no images: large serves
    c.chat(SHORT)
    savings = c.usage.routing_savings()
    assert (savings.records, savings.rescued, savings.priced) == (2, 1, 1)
    short = ledger.records()[1]
    assert savings.baseline == at("mid", short)
    assert savings.routed == at("small", short)


def test_an_untiered_requested_model_is_still_a_baseline() -> None:
    config = registry(mode="enforced")
    config["models"].append(
        {"id": "plain", "provider": "p-mid", "pricing": {"input": "2", "output": "8"}}
    )
    config["defaults"]["chat"] = "plain"
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(config, ledger=ledger)
    c.chat(SHORT)  # small serves; plain (no tier) could have
    savings = c.usage.routing_savings()
    assert (savings.records, savings.rescued, savings.priced) == (1, 0, 1)
    (record,) = ledger.records()
    expected = (record.input_uncached * 2 + record.output * 8) / M
    assert savings.baseline == expected


def test_a_dry_run_served_by_a_fallback_compares_the_models_it_named() -> None:
    config = registry(mode="dry_run")
    config["models"][1]["fallbacks"] = ["large"]
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(config, ledger=ledger)
    c.deterministic("p-mid").enqueue(status=503)
    c.chat(SHORT)  # mid fails, large serves; routing would have chosen small
    (record,) = ledger.records()
    assert record.model == "large"
    savings = c.usage.routing_savings()
    assert savings.paid == at("large", record)
    assert savings.baseline == at("mid", record)
    assert savings.routed == at("small", record)


def test_bad_times_and_modes_are_typed_errors() -> None:
    c = client(palyra.MemoryLedger(), mode="dry_run")
    with pytest.raises(palyra.InvalidRequestError, match="since"):
        c.usage.routing_savings(since="yesterday")  # type: ignore[arg-type]
    with pytest.raises(palyra.InvalidRequestError, match="until"):
        c.usage.records(until=3)  # type: ignore[arg-type]
    assert c.usage.routing_savings(mode="dry-run").mode == "dry_run"
