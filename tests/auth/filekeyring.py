"""A keyring backend in one JSON file, shared by processes: for the tests that
need one vault seen by several processes (a MemorySecretStore cannot be),
where no Secret Service may run. The file is locked around every access."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring.backend
import keyring.errors

ENV = "PALYRA_TEST_KEYRING"


class FileKeyring(keyring.backend.KeyringBackend):
    """Secrets in the JSON file named by ``$PALYRA_TEST_KEYRING``."""

    # Never chosen by keyring on its own (it lists every backend class it
    # knows): only where a test sets it.
    priority = -1  # type: ignore[assignment]

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self._path = path

    @property
    def path(self) -> Path:
        """The file: the one given, else ``$PALYRA_TEST_KEYRING``."""
        return Path(self._path or os.environ[ENV])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                items = json.loads(self.path.read_text()) if self.path.exists() else {}
                before = dict(items)
                yield items
                if items != before:
                    self.path.write_text(json.dumps(items))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get_password(self, service: str, username: str) -> str | None:
        with self._locked() as items:
            return items.get(f"{service}\0{username}")  # type: ignore[no-any-return]

    def set_password(self, service: str, username: str, password: str) -> None:
        with self._locked() as items:
            items[f"{service}\0{username}"] = password

    def delete_password(self, service: str, username: str) -> None:
        with self._locked() as items:
            if items.pop(f"{service}\0{username}", None) is None:
                raise keyring.errors.PasswordDeleteError("not found")
