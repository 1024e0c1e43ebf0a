"""Locks shared by threads and processes, on lock files in palyra's home.

`hold` takes a `threading.Lock` of this process first (threads queue on it
cheaply), then an exclusive OS lock on the file: ``flock`` on POSIX,
``msvcrt.locking`` on Windows, both polled without blocking so that a wait
always ends, at the latest with a `palyra.AuthProfileError` naming the file.
Lock files are never deleted: deleting one races with a process that has
just opened it, and two processes would then each hold "the" lock.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._exceptions import AuthProfileError

__all__ = ["O_BINARY", "file_error", "hold", "private_directory"]

# Windows opens files in text mode unless told: "\n" would become "\r\n".
O_BINARY: int = getattr(os, "O_BINARY", 0)
_POLL_SECONDS = 0.01


@contextmanager
def hold(path: Path, timeout: float) -> Iterator[None]:
    """Hold the lock file ``path`` (made, with its directory, if missing).

    Raises:
        palyra.AuthProfileError: Another thread or process held it for
            ``timeout`` seconds, or the file cannot be made or locked.
    """
    wait = min(max(timeout, 0.0), threading.TIMEOUT_MAX)
    deadline = time.monotonic() + wait
    in_process = _THREAD_LOCKS.get(path)
    if not in_process.acquire(timeout=wait):
        raise _busy(path, wait, "another thread of this process holds it")
    try:
        fd = _open(path)
        try:
            _lock(fd, path, deadline, wait)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)
    finally:
        in_process.release()


def private_directory(path: Path) -> None:
    """Make ``path`` (mode 0700) if it is missing; an existing one is left
    alone, and missing parents get the usual mode, as `os.makedirs` does."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def file_error(action: str, path: Path, exc: OSError) -> AuthProfileError:
    """An OS failure on one of palyra's files, said with the OS's words."""
    return AuthProfileError(f"{action} {path}: {exc.strerror or type(exc).__name__}")


class _ThreadLocks:
    """One `threading.Lock` per lock file, shared by everything in a process."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, path: Path) -> threading.Lock:
        key = os.path.abspath(path)
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def reset(self) -> None:
        """In a forked child: a lock a parent's thread held is nobody's now."""
        self._locks = {}
        self._guard = threading.Lock()


_THREAD_LOCKS = _ThreadLocks()
if sys.platform != "win32":
    os.register_at_fork(after_in_child=_THREAD_LOCKS.reset)


def _open(path: Path) -> int:
    try:
        private_directory(path.parent)
        return os.open(path, os.O_RDWR | os.O_CREAT | O_BINARY, 0o600)
    except OSError as exc:
        raise file_error("cannot open the lock file", path, exc) from None


def _lock(fd: int, path: Path, deadline: float, wait: float) -> None:
    """Take the OS lock on ``fd``, polling until ``deadline``."""
    while True:
        try:
            if _try_lock(fd):
                return
        except OSError as exc:
            raise file_error("cannot lock", path, exc) from None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _busy(path, wait, "another palyra process holds it")
        time.sleep(min(_POLL_SECONDS, remaining))


def _try_lock(fd: int) -> bool:
    """Take the lock if it is free; False if another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLOCK):
                return False
            raise
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    # msvcrt unlocks from the file position, still 0: the fd is never read.
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _busy(path: Path, wait: float, who: str) -> AuthProfileError:
    return AuthProfileError(
        f"gave up after {wait:g} s waiting for the lock {path}: {who};"
        " try again when it is done"
    )
