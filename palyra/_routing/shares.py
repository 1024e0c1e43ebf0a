"""How much of each model's prompts it has lately read from its prompt cache.

A request's price depends on how many of its prompt tokens the upstream
serves from its cache (OpenAI bills them at half price or less, Anthropic at
a tenth). No one knows that before the call, so routing prices a request at
the share each model has read from its cache in recent calls: an
exponentially weighted average, updated by every served call.
"""

from __future__ import annotations

from collections.abc import Callable

from .._usage import NormalizedUsage

__all__ = ["CacheShares"]

_WEIGHT = 0.2  # of the newest call: about the last ten calls count
_MAX_KEYS = 4096  # a bound, for registries rebuilt with ever new names


class CacheShares:
    """The recent prompt-cache share of each ``(provider, model)``, in [0, 1].

    Safe to share between threads: an update is one dict store, and a lost
    race loses one sample of an average.
    """

    __slots__ = ("_shares",)

    def __init__(self) -> None:
        self._shares: dict[tuple[str, str], float] = {}

    @property
    def share_of(self) -> Callable[[tuple[str, str], float], float]:
        """``share_of(key, 0.0)``: `share` as one bound dict lookup, for the
        router's per-model loop."""
        return self._shares.get

    def share(self, key: tuple[str, str]) -> float:
        """The share of prompt tokens read from the cache (0.0: none seen)."""
        return self._shares.get(key, 0.0)

    def observe(self, key: tuple[str, str], usage: NormalizedUsage) -> None:
        """Fold one served call's usage into the key's average."""
        prompt = usage.input_uncached + usage.cache_read + usage.cache_write
        if prompt <= 0 or usage.estimated:
            return  # nothing reported about the cache
        share = usage.cache_read / prompt
        shares = self._shares
        old = shares.get(key)
        if old is None and len(shares) >= _MAX_KEYS:
            shares.clear()
        shares[key] = share if old is None else old + _WEIGHT * (share - old)
