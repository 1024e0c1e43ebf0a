"""What a call used and cost, and where its record goes: `Meter` and
`LedgerSlot`.

`Meter` turns an answer's usage into `NormalizedUsage` and prices it for the
model that served; it also works out a call's worst case before dispatch
(what budgets reserve). `LedgerSlot` holds the client's ledger: the one given,
none, or the default `SQLiteLedger` (a `PostgresLedger` when ``[ledger] url``
is set), made on the first record. A record that cannot be written never
fails the call: the failure is logged once (with the ledger's path) until a
write succeeds again, and budgets hear of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from .._config import LedgerConfig
from .._usage import Cost, NormalizedUsage, trusted
from .._wire import CompletionUsage, EmbeddingUsage
from .held import HELD
from .ledger import UsageLedger
from .prices import PriceBook
from .pricing import cost_of, estimated_total
from .records import LedgerError, LedgerHealth, UsageRecord
from .usage import from_embeddings, from_openai

__all__ = ["DEFAULT_WORST_OUTPUT", "LEDGER_FILE", "LedgerSlot", "Meter"]

logger = logging.getLogger("palyra")

LEDGER_FILE = "usage.sqlite3"
DEFAULT_WORST_OUTPUT = 4096
"""Output tokens a budget reserves for a call that names no maximum, to a
model whose entry gives neither ``max_output_tokens`` nor a context window."""

_NOTHING = NormalizedUsage()
_NOTHING_ESTIMATED = NormalizedUsage(estimated=True)


class Meter:
    """Usage and cost of calls, priced by one client's `PriceBook`."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices

    @staticmethod
    def usage(
        reported: CompletionUsage | EmbeddingUsage | None, estimated: bool
    ) -> NormalizedUsage:
        """The normalised usage of an answer (nothing reported: zero)."""
        if reported is None:
            return _NOTHING_ESTIMATED if estimated else _NOTHING
        if isinstance(reported, CompletionUsage):
            return from_openai(reported, estimated=estimated)
        return from_embeddings(reported, estimated=estimated)

    def cost(
        self,
        provider: str,
        kind: str,
        upstream: str,
        usage: NormalizedUsage,
        at: datetime,
    ) -> Cost:
        """``usage`` priced for ``upstream`` served by ``provider`` at ``at``."""
        return cost_of(usage, self.prices.entry(provider, kind, upstream, at))

    def estimate(
        self,
        provider: str,
        kind: str,
        upstream: str,
        tokens: tuple[int, int, int],
        at: datetime,
    ) -> Decimal | None:
        """The total cost of ``(uncached input, cache reads, output)`` tokens
        (routing's estimate of a request), as `cost` would total it; None
        when unpriced."""
        entry = self.prices.entry(provider, kind, upstream, at)
        return None if entry is None else estimated_total(entry, *tokens)

    @staticmethod
    def worst_case(
        prompt_tokens: int,
        requested_output: int,
        max_output: int | None,
        context_window: int | None,
    ) -> NormalizedUsage:
        """The most a call may use: its prompt (all uncached) and the most
        output it may be given: the caller's maximum, else the model's, else
        what the context window leaves, else `DEFAULT_WORST_OUTPUT`."""
        output = requested_output or max_output
        if not output and context_window:
            output = max(context_window - prompt_tokens, 0)
        return trusted(
            NormalizedUsage,
            input_uncached=max(prompt_tokens, 0),
            cache_read=0,
            cache_write=0,
            cache_write_5m=None,
            cache_write_1h=None,
            output=max(output or DEFAULT_WORST_OUTPUT, 0),
            reasoning=0,
            estimated=True,
        )


class LedgerSlot:
    """The client's ledger, made on first use, and its failures.

    Args:
        given: ``Palyra(ledger=)``: a ledger, False for none, or None for
            what the ``[ledger]`` table says.
        config: The ``[ledger]`` table.
        home: palyra's home (a callable: resolved only when needed).
        on_state: Told after each write: None when it worked, else the
            failure's text (budgets' ``on_ledger_error`` policies use it).
    """

    def __init__(
        self,
        given: UsageLedger | bool | None,
        config: LedgerConfig,
        home: Callable[[], Path],
        on_state: Callable[[str | None], None] | None = None,
    ) -> None:
        if given is True:
            given = None
        self._off = given is False or (given is None and not config.enabled)
        self._ledger: UsageLedger | None = None if given is False else given
        self._config = config
        self._home = home
        self._lock = threading.Lock()
        self._failing = False
        self.on_state = on_state

    @property
    def enabled(self) -> bool:
        """Whether records are kept at all."""
        return not self._off

    def get(self) -> UsageLedger | None:
        """The ledger (the default one made now if need be); None when off."""
        ledger = self._ledger
        if ledger is None and not self._off:
            with self._lock:
                ledger = self._ledger
                if ledger is None:
                    ledger = self._ledger = self._default()
        return ledger

    def required(self) -> UsageLedger:
        """The ledger, for queries.

        Raises:
            LedgerError: usage is not being recorded (``ledger=False``).
        """
        ledger = self.get()
        if ledger is None:
            raise LedgerError(
                "no usage ledger: this client keeps no records"
                " (Palyra(ledger=False) or [ledger] enabled = false)"
            )
        return ledger

    def write(self, record: UsageRecord) -> bool:
        """Keep ``record``; False (logged once per outage) when it cannot be.

        While an async call runs (`HELD` set for its task), the record is
        held instead, and written without stalling the event loop before the
        call returns (``_governance.held``).
        """
        holder = HELD.get()
        if holder is not None and not holder.closed and not self._off:
            holder.records.append((self, record))
            return True
        return self.write_many([record])

    def write_many(self, records: list[UsageRecord]) -> bool:
        """Keep ``records`` (in one transaction where the ledger can)."""
        ledger = self._for_writing()
        if ledger is None:
            return False
        try:
            many = getattr(ledger, "record_many", None)
            if many is not None:
                many(records)
            else:  # a ledger of the user's may keep one at a time
                for record in records:
                    ledger.record(record)
        except Exception as exc:  # a ledger of the user's may raise anything
            self._failed(ledger, exc)
            return False
        self._written()
        return True

    def try_write_many(self, records: list[UsageRecord]) -> bool:
        """`write_many` where the ledger can keep ``records`` without waiting
        (its ``try_record_many``): True once they are kept or their failure
        is logged; False, with nothing kept, where it would have to wait (or
        the ledger cannot say), for `write_many` in a thread instead."""
        ledger = self._for_writing()
        now = getattr(ledger, "try_record_many", None)
        if ledger is None or now is None:
            return ledger is None
        try:
            if not now(records):
                return False
        except Exception as exc:  # a ledger of the user's may raise anything
            self._failed(ledger, exc)
            return True
        self._written()
        return True

    def _for_writing(self) -> UsageLedger | None:
        """The ledger, or None (the failure logged) where the configured one
        cannot even be made (``[ledger] url`` without psycopg installed):
        that fails no call either."""
        try:
            return self.get()
        except LedgerError as exc:
            self._failed(None, exc)
            return None

    def _written(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("palyra: the usage ledger is writable again")
            if self.on_state is not None:
                self.on_state(None)

    def health(self) -> LedgerHealth:
        """The ledger's own account (a client without one reports ok)."""
        ledger = None if self._off else self._ledger
        if ledger is None:
            url = self._config.url
            path = None if self._off else str(url or self.default_path())
            return LedgerHealth(
                ok=True, path=path, last_error=None, failed_writes=0, written=0
            )
        return ledger.health()

    def default_path(self) -> Path:
        """Where the default ledger lives (a relative path is under home)."""
        configured = self._config.path
        if configured is None:
            return self._home() / LEDGER_FILE
        path = Path(configured).expanduser()
        return path if path.is_absolute() else self._home() / path

    def close(self) -> None:
        """Close the ledger's connections; it reopens if used again."""
        ledger = self._ledger
        if ledger is not None:
            ledger.close()

    def _default(self) -> UsageLedger:
        if self._config.url is not None:
            # psycopg loads with the first record, never with the client.
            from .postgres_ledger import PostgresLedger

            dsn = self._config.url.get_secret_value()
            return PostgresLedger(dsn, timeout=self._config.timeout)
        from .sqlite_ledger import SQLiteLedger  # sqlite3 loads with the first record

        return SQLiteLedger(self.default_path(), timeout=self._config.timeout)

    def _failed(self, ledger: UsageLedger | None, exc: Exception) -> None:
        text = str(exc) if isinstance(exc, LedgerError) else _describe(ledger, exc)
        if not self._failing:
            self._failing = True
            # Once per outage: a full disk would otherwise log every call.
            logger.error("palyra: usage record not kept: %s", text)
        if self.on_state is not None:
            self.on_state(text)


def _describe(ledger: UsageLedger | None, exc: Exception) -> str:
    path = getattr(ledger, "path", None)
    where = f" at {path}" if path is not None else ""
    return f"{type(ledger).__name__}{where} raised {type(exc).__name__}: {exc}"
