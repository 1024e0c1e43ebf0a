"""Connections to the PostgreSQL ledger: psycopg loaded on demand, the DSN
shown without its password, a small bounded pool, and psycopg's errors as a
`LedgerError` that names the server and never the password.

The pool is a lock, a list of idle connections and a bound: a thread takes
an idle connection or makes one (up to ``size``), or waits for one until the
ledger's timeout. psycopg_pool would bring a dependency and a background
thread for what a few lines do here. A connection whose server went away
(a restart, ``pg_terminate_backend``) is seen broken when next used: it is
dropped with every idle one (they died with it, most likely) and the action
runs once more on a new connection, so a restart costs no caller an error.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from .._utils import redact, without_password
from .records import LedgerError

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["Pool", "Target", "load_psycopg"]

T = TypeVar("T")
_SHOWN_KEYS = ("host", "hostaddr", "port", "dbname", "user")


def load_psycopg() -> ModuleType:
    """psycopg 3, imported now (never with palyra itself).

    Raises:
        LedgerError: it is not installed.
    """
    try:
        import psycopg
        import psycopg.conninfo
        import psycopg.types.json
    except ImportError:
        raise LedgerError(
            "the PostgreSQL usage ledger needs psycopg 3:"
            " pip install 'palyra[postgres]'"
        ) from None
    return psycopg


class Target:
    """Where the ledger's database is: the DSN (a ``postgresql://`` URL or
    libpq's ``key=value`` form), how it is shown, and the password that no
    message may carry. Parsing is libpq's own, with no I/O."""

    def __init__(self, dsn: str) -> None:
        psycopg = load_psycopg()
        try:
            params: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error:
            # libpq's message quotes the DSN, password and all: not shown.
            raise LedgerError(
                "the usage ledger's PostgreSQL DSN cannot be parsed (a"
                " postgresql:// URL or libpq key=value pairs)"
            ) from None
        self.dsn = dsn
        self.params = params
        self.secrets = tuple(
            str(params[key]) for key in ("password", "sslpassword") if params.get(key)
        )
        if dsn.startswith(("postgresql://", "postgres://")):
            self.shown = without_password(dsn)
        else:
            self.shown = " ".join(
                f"{key}={params[key]}" for key in _SHOWN_KEYS if params.get(key)
            )

    def __repr__(self) -> str:
        return f"Target({self.shown!r})"

    def error(self, action: str, exc: BaseException) -> LedgerError:
        """``exc`` as the `LedgerError` a caller sees: it names the server
        (libpq's own text names host and port), never the password."""
        if isinstance(exc, LedgerError):
            return exc
        text = " ".join(str(exc).split())
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return LedgerError(
            f"the usage ledger {self.shown} could not {action}:"
            f" {type(exc).__name__}: {redact(text)}"
        )


class Pool:
    """At most ``size`` connections to ``target``, made on demand.

    Args:
        target: The database.
        size: Connections at most; a thread past them waits for one.
        timeout: Seconds a connect, a statement (``statement_timeout``) or a
            wait for a free connection may take.
    """

    def __init__(self, target: Target, size: int, timeout: float) -> None:
        self.target = target
        self.size = size
        self.timeout = timeout
        self._psycopg = load_psycopg()
        self._cond = threading.Condition()
        self._idle: list[Connection[Any]] = []
        self._live: set[Connection[Any]] = set()  # made since the last close
        self._connecting = 0
        self._orphans: list[Connection[Any]] = []
        self._pid = os.getpid()

    def run(self, action: Callable[[Connection[Any]], T]) -> T:
        """``action`` on a connection of the pool, once more on a new one if
        the first turned out broken (the server restarted, or dropped it)."""
        for attempt in (1, 2):
            conn = self._acquire()
            try:
                result = action(conn)
            except self._psycopg.Error:
                broken = conn.broken or conn.closed
                self._release(conn)
                if broken and attempt == 1:
                    self.drop_idle()
                    continue
                raise
            except BaseException:
                self._release(conn)
                raise
            self._release(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def drop_idle(self) -> None:
        """Close the idle connections (busy ones close when given back)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._live.difference_update(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()

    def close(self) -> None:
        """Close every idle connection now and each busy one when it is
        given back; the pool makes new ones if used again."""
        with self._cond:
            self._live.clear()
        self.drop_idle()

    def _acquire(self) -> Connection[Any]:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            self._after_fork()
            while not self._idle and len(self._live) + self._connecting >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LedgerError(
                        f"the usage ledger {self.target.shown}: all {self.size}"
                        f" connections stayed busy for more than {self.timeout} s"
                    )
                self._cond.wait(left)
            if self._idle:
                return self._idle.pop()
            self._connecting += 1  # the slot is taken while connecting
        conn = None
        try:
            conn = self._connect()
        finally:
            with self._cond:
                self._connecting -= 1
                if conn is not None:
                    self._live.add(conn)
                self._cond.notify()
        return conn

    def _release(self, conn: Connection[Any]) -> None:
        idle = self._psycopg.pq.TransactionStatus.IDLE
        with self._cond:
            keep = (
                conn in self._live
                and not conn.closed
                and conn.info.transaction_status == idle
            )
            if keep:
                self._idle.append(conn)
            else:
                self._live.discard(conn)
            self._cond.notify()
        if not keep:
            conn.close()

    def _after_fork(self) -> None:
        """In a forked child, forget the parent's connections without closing
        them: closing would end the parent's sessions on the server (the lock
        is held)."""
        if os.getpid() != self._pid:
            self._orphans.extend(self._live)  # never collected, so never closed
            self._idle, self._live, self._pid = [], set(), os.getpid()
            self._connecting = 0

    def _connect(self) -> Connection[Any]:
        psycopg = self._psycopg
        options: dict[str, Any] = {
            "autocommit": True,  # one statement, one transaction; else explicit
            "connect_timeout": max(2, math.ceil(self.timeout)),  # libpq's minimum
        }
        if "application_name" not in self.target.params:
            options["application_name"] = "palyra"
        conn: Connection[Any] = psycopg.connect(self.target.dsn, **options)
        try:
            conn.adapters.register_dumper(dict, psycopg.types.json.JsonbDumper)
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false),"
                " set_config('TimeZone', 'UTC', false)",
                [f"{max(1, round(self.timeout * 1000))}ms"],
            )
        except BaseException:
            conn.close()
            raise
        return conn
