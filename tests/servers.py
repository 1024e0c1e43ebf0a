"""Real Redis and PostgreSQL servers for the tests, started on loopback ports
in temporary directories and stopped at the end of the session.

`.ci/run` installs Debian's ``redis-server`` and ``postgresql``; where a
binary is missing, `find_binary` returns None and the fixtures that need it
skip with a reason naming what to install. Nothing here talks to a server
that the test run did not start.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "RedisServer", "find_binary", "free_port"]

_START_DEADLINE_S = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str | None:
    """``name`` on PATH, or in Debian's PostgreSQL directory (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} in time")


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, no persistence, in its own dir.

    `stop` and `start` again keep the port: a restart mid-run, as a user's
    Redis restarts, with its data gone (no persistence).
    """

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="palyra-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it listens."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, self._proc, "redis-server")

    def stop(self) -> None:
        """Stop the server (SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def close(self) -> None:
        """Stop and remove the directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1, trust auth, in a temp directory.

    PostgreSQL refuses to run as root: as root (CI containers), the cluster
    belongs to the ``postgres`` user that Debian's package creates, and its
    commands run through ``runuser``.
    """

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="palyra-pg-"))
        self.data = self.dir / "data"
        self._proc: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
            os.chmod(self.dir, 0o700)

    @property
    def dsn(self) -> str:
        """The ``postgresql://`` URL of the ``palyra`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/palyra"

    def start(self) -> None:
        """initdb, start, create the ``palyra`` database."""
        run = [*self._as, f"{self.bindir}/initdb", "-D", str(self.data)]
        subprocess.run(
            [*run, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._proc = subprocess.Popen(
            [
                *self._as, f"{self.bindir}/postgres", "-D", str(self.data),
                "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.dir),
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for_port(self.port, self._proc, "postgres")
        deadline = time.monotonic() + _START_DEADLINE_S
        while True:  # listening is not yet accepting: retry until it is
            made = subprocess.run(
                [*self._as, f"{self.bindir}/createdb", "-h", "127.0.0.1",
                 "-p", str(self.port), "-U", "postgres", "palyra"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            if made.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {made.stderr.decode()[-300:]}")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the server (immediate shutdown: the data is thrown away) and
        remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            subprocess.run(
                [*self._as, f"{self.bindir}/pg_ctl", "stop", "-D", str(self.data),
                 "-m", "immediate", "-t", "15"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
