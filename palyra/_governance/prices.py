"""The client's prices: `PriceBook`, built on first use from the config.

The entries come from three places: each model entry's ``pricing`` and the
``[pricing] table`` file (the user's entries, one layer: of two in effect for
a model, the more specific and the later-starting wins, `PriceTable.lookup`),
and (unless ``[pricing] defaults = false``) the shipped snapshot, which any
user entry in effect beats. Nothing is read at construction: the file is
read by the first call that needs a price. Lookups are cached per (provider,
model), so pricing a call costs a dictionary lookup and a scan of the few
entries that name its model.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .._config import PalyraConfig
from .._exceptions import ConfigError
from .._usage import PriceEntry
from .default_prices import DEFAULT_PRICES
from .pricing import PriceTable, entry_from_config, pick

__all__ = ["PriceBook", "load_price_file"]

# What a [[prices]] entry of a table file may say, and the PriceEntry field.
_FILE_FIELDS = {
    "model": "model",
    "provider": "provider",
    "kind": "provider_kind",
    "input": "input",
    "output": "output",
    "cache_read": "cache_read",
    "cache_write_5m": "cache_write_5m",
    "cache_write_1h": "cache_write_1h",
    "per_request": "per_request",
    "effective_from": "effective_from",
    "effective_until": "effective_until",
    "source": "source",
}


class PriceBook:
    """Prices for one client's calls.

    Args:
        config: The client's configuration.
    """

    def __init__(self, config: PalyraConfig) -> None:
        self._config = config
        self._table: PriceTable | None = None
        self._lock = threading.Lock()
        # Per (provider, model): the entry, when no entry naming the model has
        # dates; else the candidates to pick from by the call's time.
        self._fixed: dict[tuple[str, str], PriceEntry | None] = {}
        self._dated: dict[tuple[str, str], tuple[tuple[PriceEntry, ...], ...]] = {}

    def table(self) -> PriceTable:
        """The whole table (built, and the file read, on first use).

        Raises:
            ConfigError: the price table file is missing or invalid.
        """
        table = self._table
        if table is None:
            with self._lock:
                table = self._table
                if table is None:
                    table = self._table = _build(self._config)
        return table

    def entry_at(
        self, provider: str, kind: str, model: str, at: datetime
    ) -> tuple[PriceEntry | None, bool]:
        """`entry`, and whether that answer holds at every time (no entry
        naming the model has dates), so that a caller may keep it."""
        entry = self.entry(provider, kind, model, at)
        return entry, (provider, model) in self._fixed

    def entry(
        self, provider: str, kind: str, model: str, at: datetime
    ) -> PriceEntry | None:
        """The price of ``model`` (its upstream name) served by ``provider``
        (of ``kind``) at ``at``; None when unpriced."""
        key = (provider, model)
        if key in self._fixed:
            return self._fixed[key]
        candidates = self._dated.get(key)
        if candidates is None:
            candidates = self.table().candidates(provider, model, kind)
            if not any(_dated(e) for layer in candidates for e in layer):
                # No entry naming the model has dates: every moment is priced
                # alike, so the pick is made once.
                entry = self._fixed[key] = pick(candidates, at)
                return entry
            self._dated[key] = candidates
        return pick(candidates, at)


def _dated(entry: PriceEntry) -> bool:
    return entry.effective_from is not None or entry.effective_until is not None


def _build(config: PalyraConfig) -> PriceTable:
    kinds = {p.id: p.kind for p in config.providers}
    user = [
        entry_from_config(
            m.upstream_model or m.id,
            m.provider,
            m.pricing,
            provider_kind=kinds.get(m.provider),
        )
        for m in config.models
        if m.pricing is not None
    ]
    if config.pricing.table is not None:
        user += load_price_file(config.pricing.table)
    defaults = DEFAULT_PRICES if config.pricing.defaults else ()
    return PriceTable(user, defaults)


def load_price_file(path: str | Path) -> list[PriceEntry]:
    """The entries of a TOML price table file (``[[prices]]`` tables).

    Raises:
        ConfigError: naming ``pricing.table``, the file, and the entry and
            field at fault.
    """
    where = Path(path).expanduser()
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _error(where, f"cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _error(where, f"is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"prices"})
    if unknown:
        raise _error(where, f"unknown table {unknown[0]!r} (expected [[prices]])")
    rows = data.get("prices", [])
    if not isinstance(rows, list):
        raise _error(where, "prices must be an array of tables ([[prices]])")
    return [_entry(where, index, row) for index, row in enumerate(rows)]


def _entry(where: Path, index: int, row: Any) -> PriceEntry:
    if not isinstance(row, Mapping):
        raise _error(where, f"prices[{index}] must be a table")
    fields: dict[str, Any] = {}
    for name, value in row.items():
        if name not in _FILE_FIELDS:
            raise _error(where, f"prices[{index}].{name}: unknown field")
        # A TOML float is written in decimal; its shortest repr is that text,
        # so Decimal(repr(x)) is the price as written, not the binary float.
        fields[_FILE_FIELDS[name]] = (
            Decimal(repr(value)) if isinstance(value, float) else value
        )
    fields.setdefault("source", f"price table {where.name}")
    try:
        return PriceEntry(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        field = next((k for k, v in _FILE_FIELDS.items() if v == loc), loc)
        suffix = f".{field}" if field else ""
        raise _error(where, f"prices[{index}]{suffix}: {first['msg']}") from None


def _error(where: Path, message: str) -> ConfigError:
    return ConfigError([("pricing.table", f"{where}: {message}")])
