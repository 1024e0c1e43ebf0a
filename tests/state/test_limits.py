"""The /v1 tokens' rate limits counted on a real Redis: every client (each
standing for a process) sharing the Redis shares each token's limit; with
Redis unreachable each counts alone."""

from __future__ import annotations

from pathlib import Path

import pytest

import palyra
from palyra._access import APITokenError
from palyra._state import RedisState
from tests.servers import free_port


def clients(home: Path, state: RedisState | str) -> tuple[palyra.Palyra, palyra.Palyra]:
    made = (
        palyra.Palyra(home=home, state=state, ledger=False),
        palyra.Palyra(home=home, state=state, ledger=False),
    )
    return made


def test_two_clients_share_a_tokens_limit(redis_url: str, tmp_path: Path) -> None:
    a, b = clients(tmp_path, RedisState(redis_url))
    _, secret = a.tokens.create("svc", rate_limit=5)
    for c in (a, b, a, b, a):
        c.tokens.verify(secret)
    with pytest.raises(APITokenError) as info:
        b.tokens.verify(secret)
    assert info.value.status == 429
    assert 11 < info.value.retry_after <= 12.1  # one request every 12 s now
    a.close()
    b.close()


def test_in_memory_each_process_counts_alone(tmp_path: Path) -> None:
    a, b = clients(tmp_path, "memory")
    _, secret = a.tokens.create("svc", rate_limit=3)
    for c in (a, a, a, b, b, b):
        c.tokens.verify(secret)  # 3 each: the limit is per process
    with pytest.raises(APITokenError):
        a.tokens.verify(secret)
    a.close()
    b.close()


def test_with_redis_unreachable_each_counts_alone(tmp_path: Path) -> None:
    down = RedisState(f"redis://127.0.0.1:{free_port()}/0", retry_interval=5)
    a, _ = clients(tmp_path, down)
    _, secret = a.tokens.create("svc", rate_limit=2)
    a.tokens.verify(secret)
    a.tokens.verify(secret)
    with pytest.raises(APITokenError) as info:
        a.tokens.verify(secret)
    assert info.value.status == 429
    a.close()
