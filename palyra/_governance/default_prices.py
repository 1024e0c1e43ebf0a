"""The default price table: a dated snapshot of published list prices.

It is a snapshot, compiled on `SNAPSHOT_DATE` from the sources named per
group below, and never fetched over the network: the user's entries (the
config, a price table file) override it, and a model missing here is
unpriced (cost None), never $0. A model is left out when its price could not
be confirmed. Standard (not Batch API) prices, USD per 1M tokens. Not
modelled: Anthropic's long-context rates (Sonnet 4 above 200k input tokens),
audio and image tokens, regional or priority surcharges.

The entries have no ``effective_from``: they price any time up to the next
snapshot. A later snapshot that changes a price should end the old entry at
the change (``effective_until``) and add a new one, so that past calls keep
their cost.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from .pricing import PriceEntry

__all__ = ["DEFAULT_PRICES", "SNAPSHOT_DATE"]

SNAPSHOT_DATE = date(2026, 12, 2)
"""The day the default table was compiled from its sources."""


def _entry(
    model: str,
    kind: str,
    source: str,
    input: str,
    output: str,
    cache_read: str | None = None,
    cache_write_5m: str | None = None,
    cache_write_1h: str | None = None,
) -> PriceEntry:
    # Prices are written as strings so that each Decimal is exactly the
    # published figure.
    def price(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    return PriceEntry(
        model=model,
        provider_kind=kind,
        input=Decimal(input),
        output=Decimal(output),
        cache_read=price(cache_read),
        cache_write_5m=price(cache_write_5m),
        cache_write_1h=price(cache_write_1h),
        source=f"{source} (default table {SNAPSHOT_DATE.isoformat()})",
    )


# Anthropic: the "Model pricing" table of
# https://docs.anthropic.com/en/docs/about-claude/pricing (stored copy read
# 2026-12-02), columns base input, 5m cache writes, 1h cache writes, cache
# hits and refreshes, output. The cache prices are the published figures
# (1.25x, 2x and 0.1x of input). Patterns cover the dated snapshots and the
# ``-latest`` / ``-0`` aliases; ``claude-opus-4-2025*`` rather than
# ``claude-opus-4-*`` because Opus 4.5 and later cost a third as much.
_ANTHROPIC = "docs.anthropic.com/en/docs/about-claude/pricing"
_ANTHROPIC_ROWS = [
    # (patterns, input, 5m write, 1h write, cache read, output)
    # Opus 4.5 to 4.8: the "Model pricing" table of
    # platform.claude.com/docs/en/about-claude/pricing (stored copy).
    (
        (
            "claude-opus-4-5*",
            "claude-opus-4-6*",
            "claude-opus-4-7*",
            "claude-opus-4-8*",
        ),
        "5",
        "6.25",
        "10",
        "0.50",
        "25",
    ),
    # Sonnet 4.5 and Haiku 4.5: their list prices ($3 / $15 and $1 / $5) as
    # the model overview pages and every secondary source give them, with
    # the published cache multipliers (1.25x, 2x, 0.1x of input).
    (("claude-sonnet-4-5*",), "3", "3.75", "6", "0.30", "15"),
    (("claude-haiku-4-5*",), "1", "1.25", "2", "0.10", "5"),
    (("claude-opus-4-1*",), "15", "18.75", "30", "1.50", "75"),
    (("claude-opus-4-2025*", "claude-opus-4-0"), "15", "18.75", "30", "1.50", "75"),
    (("claude-sonnet-4-2025*", "claude-sonnet-4-0"), "3", "3.75", "6", "0.30", "15"),
    (("claude-3-7-sonnet*",), "3", "3.75", "6", "0.30", "15"),
    (("claude-3-5-haiku*",), "0.80", "1", "1.6", "0.08", "4"),
    (("claude-3-haiku*",), "0.25", "0.30", "0.50", "0.03", "1.25"),
]

# OpenAI: its pricing page (platform.openai.com/docs/pricing) is not in the
# stored corpus; the figures are those every secondary source citing it
# agrees on: deploybase.ai "OpenAI pricing" (March 2026), aumiqx.com (April
# 2026), aimodelcalc (May 2026), tokenmath.io (checked 2026-06-21). The
# $1 / $4 sometimes quoted for gpt-4.1 is the Batch API's half price. Cached
# input: 50% of input for gpt-4o, gpt-4o-mini and o3-mini, 25% for the
# gpt-4.1 family (adk-model's OpenAI table, March 2026; the openai-models
# crate for gpt-4o / gpt-4o-mini; api-evangelist's reading of the page on
# 2026-11-05). Exact names only: dated snapshots are not all priced alike
# (gpt-4o-2024-05-13 was dearer), so they stay unpriced until confirmed.
_OPENAI = "platform.openai.com/docs/pricing via secondary sources"
_OPENAI_ROWS = [
    # (model, input, cached input, output)
    ("gpt-4o", "2.50", "1.25", "10.00"),
    ("gpt-4o-mini", "0.15", "0.075", "0.60"),
    ("gpt-4.1", "2.00", "0.50", "8.00"),
    ("gpt-4.1-mini", "0.40", "0.10", "1.60"),
    ("o3-mini", "1.10", "0.55", "4.40"),
]
# Embeddings (input only): same sources; tokenmath.io and goitreels.com
# (April 2026) for text-embedding-3-small $0.02 and -large $0.13.
_EMBEDDING_ROWS = [
    ("text-embedding-3-small", "0.02"),
    ("text-embedding-3-large", "0.13"),
]

DEFAULT_PRICES: tuple[PriceEntry, ...] = (
    *(
        _entry(pattern, "anthropic", _ANTHROPIC, inp, out, read, five, hour)
        for patterns, inp, five, hour, read, out in _ANTHROPIC_ROWS
        for pattern in patterns
    ),
    *(
        _entry(model, "openai_compatible", _OPENAI, inp, out, cache_read=cached)
        for model, inp, cached, out in _OPENAI_ROWS
    ),
    *(
        _entry(model, "openai_compatible", _OPENAI, inp, "0")
        for model, inp in _EMBEDDING_ROWS
    ),
)
"""The shipped entries, for `PriceTable`'s ``defaults``."""
