"""Usage governance's tables: ``[ledger]`` (where usage records are kept) and
``[pricing]`` (where prices come from besides the model entries)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_serializer, field_validator

from .._utils import without_password
from .base import ConfigModel

__all__ = ["LedgerConfig", "LedgerUrl", "PricingConfig"]

_Path = Annotated[str, Field(min_length=1, max_length=4096)]
_SCHEMES = ("postgresql://", "postgres://")


class LedgerUrl(SecretStr):
    """A database URL kept like a secret: its repr, its text and the config's
    dumps show it with the password as ``***`` (the rest of it, host and
    database, is what an operator needs to see)."""

    def _display(self) -> str:
        return without_password(self.get_secret_value())


class LedgerConfig(ConfigModel):
    """The usage ledger: one record per call.

    Args:
        enabled: ``false`` keeps no records (``Palyra(ledger=False)`` too);
            budgets then count only this process's calls.
        path: The SQLite file. Default ``usage.sqlite3`` in palyra's home
            (``home=``, ``$PALYRA_HOME`` or the user config directory); a
            relative path is taken from that home, ``~`` is expanded. Nothing
            is opened until the first call is recorded.
        url: A ``postgresql://`` (or ``postgres://``) URL: the ledger is then
            a `PostgresLedger` in that database (``pip install
            'palyra[postgres]'``), shared by every process and host that
            names it; not together with ``path``. A password in it is shown
            as ``***`` wherever the config is (prefer ``PGPASSWORD`` or
            ``~/.pgpass``). Nothing is connected until the first record.
        timeout: Seconds a write waits for another process's lock before the
            ledger reports itself failing (the call is answered regardless);
            for PostgreSQL, the connect and statement timeouts.
    """

    enabled: bool = True
    path: _Path | None = None
    url: LedgerUrl | None = None
    timeout: Annotated[float, Field(gt=0, le=600)] = 5.0

    @field_validator("url")
    @staticmethod
    def _check_url(value: LedgerUrl | None, info: ValidationInfo) -> LedgerUrl | None:
        # The messages never quote the URL: it may hold a password.
        if value is None:
            return None
        text = value.get_secret_value()
        if not text.startswith(_SCHEMES) or len(text) > 4096:
            raise ValueError("must be a postgresql:// or postgres:// URL")
        if info.data.get("path") is not None:
            raise ValueError("url and path are mutually exclusive: one ledger")
        return value

    @field_serializer("url", when_used="json")
    @staticmethod
    def _show_url(value: LedgerUrl | None) -> str | None:
        return None if value is None else str(value)


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
