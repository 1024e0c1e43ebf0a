"""Usage normalised across providers: `NormalizedUsage` and its mappings.

Providers count the same tokens differently, and the difference is where
peers misprice cached tokens (the ecosystem notes, pain point 7):

- OpenAI's ``prompt_tokens`` *includes* ``prompt_tokens_details.cached_tokens``
  and its ``completion_tokens`` *includes* ``reasoning_tokens``.
- Anthropic's ``input_tokens`` *excludes* cache reads and cache writes, which
  come as ``cache_read_input_tokens`` and ``cache_creation_input_tokens``;
  ``output_tokens`` includes thinking.

palyra's Anthropic adapter (``palyra._providers.anthropic_stream.usage_from``)
already turns Anthropic usage into OpenAI semantics: ``prompt_tokens`` is
``input_tokens + cache_read + cache_creation``, with ``cached_tokens`` the
reads and ``cache_write_tokens`` the writes. So `from_openai` subtracts both
details from ``prompt_tokens``, which is right for OpenAI (that sends no
``cache_write_tokens``), for OpenAI-compatible servers that report writes
inside the prompt count, and for that adapter. The adapter also carries the
5 min / 1 h split of Anthropic's cache writes, as the palyra extension
``prompt_tokens_details.cache_write_1h_tokens`` (the rest of the writes are
5 min ones), and `from_openai` keeps it; `from_anthropic` keeps it from
Anthropic's native counts.
"""

from __future__ import annotations

from .._usage import NormalizedUsage, trusted
from .._wire import CompletionUsage, EmbeddingUsage

__all__ = ["NormalizedUsage", "from_anthropic", "from_embeddings", "from_openai"]


def from_openai(usage: CompletionUsage, *, estimated: bool = False) -> NormalizedUsage:
    """Normalise usage in OpenAI semantics (also what palyra's adapters produce).

    ``prompt_tokens`` includes the cached reads and the cache writes, so both
    are taken out of it; ``completion_tokens`` includes reasoning, so output
    is ``completion_tokens`` and reasoning is reported beside it. An upstream
    whose details exceed its totals is clamped rather than trusted: the
    uncached input never goes below zero and reasoning never above output,
    because a negative or doubled count would misprice the call.

    ``cache_write_1h_tokens`` (palyra's Anthropic adapter) splits the writes:
    those are the 1 hour ones and the rest the 5 minute ones. A split larger
    than the writes is dropped, and the writes priced as of unknown lifetime.
    """
    # Negative counts (a broken upstream) count as none.
    prompt = max(usage.prompt_tokens, 0)
    details = usage.prompt_tokens_details
    read = max(details.cached_tokens or 0, 0) if details else 0
    written = max(details.cache_write_tokens or 0, 0) if details else 0
    # Details larger than the prompt are an upstream inconsistency; keep the
    # prompt total (what is billed) and shrink the details into it.
    read = min(read, prompt)
    written = min(written, prompt - read)
    hour = details.cache_write_1h_tokens if details else None
    five = None
    if hour is not None and 0 <= hour <= written:
        five = written - hour
    else:
        hour = None
    output = max(usage.completion_tokens, 0)
    completion = usage.completion_tokens_details
    reasoning = max(completion.reasoning_tokens or 0, 0) if completion else 0
    # Built from counts checked and clamped above: no second validation (this
    # runs on every call).
    return trusted(
        NormalizedUsage,
        input_uncached=prompt - read - written,
        cache_read=read,
        cache_write=written,
        cache_write_5m=five,
        cache_write_1h=hour,
        output=output,
        reasoning=min(reasoning, output),
        estimated=estimated,
    )


def from_anthropic(
    input_tokens: int,
    output_tokens: int,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    *,
    cache_creation_5m: int | None = None,
    cache_creation_1h: int | None = None,
    estimated: bool = False,
) -> NormalizedUsage:
    """Normalise Anthropic's native usage counts.

    ``input_tokens`` excludes cache reads and writes, so it is the uncached
    input as it stands. ``cache_creation_5m`` / ``cache_creation_1h`` are
    ``usage.cache_creation.ephemeral_5m_input_tokens`` / ``..._1h_...``; when
    they do not add up to ``cache_creation_input_tokens`` the split is
    dropped (the aggregate is what Anthropic bills) and the writes are priced
    as if their lifetime were unknown. Anthropic does not count thinking
    separately: it is inside ``output_tokens``, and ``reasoning`` is 0.
    """
    written = cache_creation_input_tokens
    five, hour = cache_creation_5m, cache_creation_1h
    if five is not None or hour is not None:
        if not written:
            written = (five or 0) + (hour or 0)
        if (five or 0) + (hour or 0) != written:
            five = hour = None
    return NormalizedUsage(
        input_uncached=input_tokens,
        cache_read=cache_read_input_tokens,
        cache_write=written,
        cache_write_5m=five,
        cache_write_1h=hour,
        output=output_tokens,
        estimated=estimated,
    )


def from_embeddings(
    usage: EmbeddingUsage, *, estimated: bool = False
) -> NormalizedUsage:
    """Normalise an embeddings call: its prompt tokens are all uncached input."""
    return NormalizedUsage(input_uncached=usage.prompt_tokens, estimated=estimated)
