"""Usage governance's tables: ``[ledger]`` (where usage records are kept) and
``[pricing]`` (where prices come from besides the model entries)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import ConfigModel

__all__ = ["LedgerConfig", "PricingConfig"]

_Path = Annotated[str, Field(min_length=1, max_length=4096)]


class LedgerConfig(ConfigModel):
    """The usage ledger: one record per call.

    Args:
        enabled: ``false`` keeps no records (``Palyra(ledger=False)`` too);
            budgets then count only this process's calls.
        path: The SQLite file. Default ``usage.sqlite3`` in palyra's home
            (``home=``, ``$PALYRA_HOME`` or the user config directory); a
            relative path is taken from that home, ``~`` is expanded. Nothing
            is opened until the first call is recorded.
        timeout: Seconds a write waits for another process's lock before the
            ledger reports itself failing (the call is answered regardless).
    """

    enabled: bool = True
    path: _Path | None = None
    timeout: Annotated[float, Field(gt=0, le=600)] = 5.0


class PricingConfig(ConfigModel):
    """Where prices come from, besides each model entry's ``pricing``.

    Args:
        table: A TOML price table file of ``[[prices]]`` entries (``model``,
            ``provider``, ``kind``, ``input``, ``output``, ``cache_read``,
            ``cache_write_5m``, ``cache_write_1h``, ``per_request``,
            ``effective_from``, ``effective_until``, ``source``). Read on the
            first call that needs a price, never at construction; a relative
            path is taken from the current directory at that time.
        defaults: Whether palyra's shipped, dated snapshot of list prices
            fills in models the config and the table do not price.
    """

    table: _Path | None = None
    defaults: bool = True
