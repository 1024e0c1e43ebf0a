"""`estimated_total` (routing's fast price of a request) gives exactly what
`cost_of` totals for the same usage: same value, same ten places."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from palyra._governance import cost_of, estimated_total
from palyra._usage import NormalizedUsage, PriceEntry

RATES = ["0", "0.15", "3", "1.25", "0.0375", "15", "0.000001", "2E+1", "0.123456789"]


@pytest.mark.parametrize("seed", range(5))
def test_the_fast_total_equals_cost_of(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        entry = PriceEntry(
            model="m",
            provider_kind=rng.choice(["anthropic", "openai_compatible"]),
            input=Decimal(rng.choice(RATES)),
            output=Decimal(rng.choice(RATES)),
            cache_read=rng.choice([None, Decimal("0.075"), Decimal("0.3")]),
            per_request=Decimal(rng.choice(["0", "0.001", "0.00000000004"])),
        )
        uncached, read, output = (rng.randrange(0, n) for n in (10**7, 10**6, 10**5))
        fast = estimated_total(entry, uncached, read, output)
        usage = NormalizedUsage(input_uncached=uncached, cache_read=read, output=output)
        slow = cost_of(usage, entry).total
        assert fast == slow
        assert str(fast) == str(slow)  # the same ten places


def test_rates_are_rescaled_when_an_entry_is_seen_again_under_a_reused_id() -> None:
    first = PriceEntry(model="a", input=Decimal("1"), output=Decimal("2"))
    assert estimated_total(first, 10**6, 0, 0) == Decimal("1.0000000000")
    second = PriceEntry(model="b", input=Decimal("7"), output=Decimal("2"))
    assert estimated_total(second, 10**6, 0, 0) == Decimal("7.0000000000")
