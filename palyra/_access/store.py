"""The token file: API tokens' records in SQLite, ``<home>/tokens.sqlite3``.

One table, ``tokens``: the public fields of `TokenInfo` and the SHA-256 of
the secret, never the secret. The file is made with mode 0600 on first use
(nothing is opened before), and every read goes to it, so a token revoked by
another process is refused at once. One connection per store, guarded by a
lock; SQLite waits up to ``timeout`` seconds for another process's writer.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import PalyraError
from .tokens import TokenInfo

if TYPE_CHECKING:
    import sqlite3

__all__ = ["TokenStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    scopes TEXT NOT NULL,
    agent TEXT,
    rate_limit INTEGER,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
)
"""
_INSERT = (
    "INSERT INTO tokens (id, name, digest, scopes, agent, rate_limit, created_at,"
    " expires_at, revoked_at) VALUES (?,?,?,?,?,?,?,?,?)"
)
_SELECT = (
    "SELECT id, name, digest, scopes, agent, rate_limit, created_at, expires_at,"
    " revoked_at FROM tokens"
)
_FIND = _SELECT + " WHERE id = ?"
_ALL = _SELECT + " ORDER BY created_at, id"


class TokenStoreError(PalyraError):
    """The token file cannot be read or written (its path and the reason)."""


class TokenStore:
    """API tokens' records in one SQLite file.

    Args:
        path: Returns the file's path (asked on first use).
        timeout: Seconds to wait for another process's lock.
    """

    def __init__(self, path: Any, timeout: float = 5.0) -> None:
        self._path = path
        self._timeout = timeout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        """Where the file is (or will be)."""
        return Path(self._path())

    def add(self, info: TokenInfo, digest: str) -> None:
        """Keep a new token's record."""
        row = (
            info.id,
            info.name,
            digest,
            json.dumps(list(info.scopes)),
            info.agent,
            info.rate_limit,
            info.created_at.isoformat(),
            _iso(info.expires_at),
            None,
        )
        self._run(_INSERT, row)

    def find(self, token_id: str) -> tuple[TokenInfo, str] | None:
        """The record of a token id and its digest, if there is one."""
        rows = self._run(_FIND, (token_id,))
        return (_info(rows[0]), rows[0][2]) if rows else None

    def all(self) -> list[TokenInfo]:
        """Every record, oldest first."""
        rows = self._run(_ALL)
        return [_info(row) for row in rows]

    def revoke(self, token_id: str, at: datetime) -> bool:
        """Mark a token revoked (once); False when there is no such token."""
        self._run(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (at.isoformat(), token_id),
        )
        return self.find(token_id) is not None

    def close(self) -> None:
        """Close the connection (it reopens when used again)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import sqlite3  # loaded with the first token operation, not with palyra

        with self._lock:
            try:
                db = self._db or self._open()
                with db:
                    return db.execute(sql, params).fetchall()
            except (sqlite3.Error, OSError) as exc:
                raise TokenStoreError(
                    f"the token file {self.path} cannot be used: {type(exc).__name__}:"
                    f" {exc}"
                ) from None

    def _open(self) -> sqlite3.Connection:  # lock held
        import sqlite3

        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, timeout=self._timeout, check_same_thread=False)
        db.execute(_SCHEMA)
        db.commit()
        self._db = db
        return db


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _info(row: tuple[Any, ...]) -> TokenInfo:
    created = _time(row[6])
    assert created is not None
    return TokenInfo(
        id=row[0],
        name=row[1],
        scopes=tuple(json.loads(row[3])),
        agent=row[4],
        rate_limit=row[5],
        created_at=created,
        expires_at=_time(row[7]),
        revoked_at=_time(row[8]),
    )
