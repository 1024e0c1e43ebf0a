"""Shared fixtures: no network, clean environment, anyio on asyncio."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.servers import PostgresServer, RedisServer, find_binary
from tests.upstream import Upstream

FAKE_KEY = "sk-palyraTESTkey0123456789abcdefSECRET"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Provider keys and palyra settings from the developer's shell never leak in."""
    for name in list(os.environ):
        if (
            name.startswith(("PALYRA_", "OPENAI_", "ANTHROPIC_"))
            or name.endswith("_PROXY")
            or name.lower().endswith("_proxy")
        ):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _palyra_home(
    _clean_environ: None,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """palyra's files go to a fresh directory per test, never the user's own."""
    monkeypatch.setenv("PALYRA_HOME", str(tmp_path_factory.mktemp("palyra-home")))


# Names the tests use in base URLs, and where they "resolve" to: tests never
# ask a real DNS server (test_netguard.py checks the real resolver on loopback).
_TEST_DNS = {"localhost": ["127.0.0.1", "::1"], "box.localhost": ["127.0.0.1"]}
_PUBLIC_TEST_ADDRESS = "203.0.114.7"  # not special to ipaddress: "public"


def fake_resolver(host: str, port: int) -> list[str]:
    """Test DNS: loopback names to loopback, everything else to one public IP."""
    return _TEST_DNS.get(host.lower(), [_PUBLIC_TEST_ADDRESS])


@pytest.fixture(autouse=True)
def _no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built in tests resolve base-URL hosts with `fake_resolver`."""
    import palyra._core.netguard

    monkeypatch.setattr(palyra._core.netguard, "system_resolver", fake_resolver)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture(name="upstream")
def upstream_fixture() -> Iterator[Upstream]:
    """A real OpenAI-compatible HTTP server on 127.0.0.1 expecting FAKE_KEY."""
    with Upstream(api_key=FAKE_KEY) as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` on loopback for the whole session (skips with
    the reason when the binary is not installed)."""
    binary = find_binary("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test (and started again if a
    test stopped it)."""
    import redis

    try:
        conn = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        conn.ping()
    except redis.ConnectionError:
        redis_server.start()
        conn = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    conn.flushall()
    conn.close()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL cluster on loopback for the whole session (skips
    with the reason when its binaries are not installed)."""
    initdb = find_binary("initdb")
    if initdb is None or find_binary("postgres") is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("PostgreSQL cannot run as root, and runuser is missing")
    server = PostgresServer(os.path.dirname(os.path.realpath(initdb)))
    try:
        server.start()
        yield server
    finally:
        server.close()


_DATABASES = iter(range(1, 1 << 30))


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL, for this test."""
    import psycopg

    name = f"t{next(_DATABASES)}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.dsn.rsplit("/", 1)[0] + "/" + name
