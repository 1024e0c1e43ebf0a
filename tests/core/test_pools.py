"""palyra's connection pools (`palyra._core.pools`): httpcore's placement of
requests on connections, made linear, keeps httpcore's decisions: at most
``max_connections`` open, surplus idle ones closed down to the keep-alive
limit, queued requests served as connections free up; sync and async, many
threads and many tasks, against the real loopback upstream."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpcore
import httpx
import pytest

from palyra._core.connect import AsyncGuardedTransport, GuardedTransport
from palyra._core.netguard import NetworkGuard
from palyra._core.pools import AsyncLinearPool, LinearPool
from tests.conftest import FAKE_KEY
from tests.upstream import Reply, Upstream

LIMITS = httpx.Limits(max_connections=6, max_keepalive_connections=3)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_httpcore_still_has_the_method_the_pools_replace() -> None:
    """An httpcore without it would silently skip the override: notice it."""
    for base in (httpcore.ConnectionPool, httpcore.AsyncConnectionPool):
        assert callable(base._assign_requests_to_connections)
    assert issubclass(LinearPool, httpcore.ConnectionPool)
    assert issubclass(AsyncLinearPool, httpcore.AsyncConnectionPool)


def _guard(upstream: Upstream) -> NetworkGuard:
    url = httpx.URL(upstream.base_url)
    return NetworkGuard(trusted=[(url.host, url.port or 80)])


def _headers() -> dict[str, str]:
    return {"authorization": f"Bearer {FAKE_KEY}"}


def test_many_threads_share_the_pool_within_its_limits() -> None:
    with Upstream(api_key=FAKE_KEY) as upstream:
        for _ in range(40):
            upstream.enqueue(Reply(json={"ok": True}, delay=0.02))
        transport = GuardedTransport(_guard(upstream), LIMITS)
        assert isinstance(transport._pool, LinearPool)
        most: list[int] = []
        with httpx.Client(transport=transport) as client:

            def call() -> None:
                answer = client.post(
                    upstream.base_url + "/chat/completions",
                    json=BODY,
                    headers=_headers(),
                )
                assert answer.status_code == 200
                most.append(len(transport._pool.connections))

            threads = [threading.Thread(target=call) for _ in range(40)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert max(most) <= LIMITS.max_connections
            assert len(most) == 40
            idle = [c for c in transport._pool.connections if c.is_idle()]
            assert len(idle) <= LIMITS.max_keepalive_connections


@pytest.mark.anyio
async def test_many_tasks_share_the_pool_within_its_limits() -> None:
    with Upstream(api_key=FAKE_KEY) as upstream:
        for _ in range(60):
            upstream.enqueue(Reply(json={"ok": True}, delay=0.02))
        transport = AsyncGuardedTransport(_guard(upstream), LIMITS)
        assert isinstance(transport._pool, AsyncLinearPool)
        most: list[int] = []
        async with httpx.AsyncClient(transport=transport) as client:

            async def call() -> Any:
                answer = await client.post(
                    upstream.base_url + "/chat/completions",
                    json=BODY,
                    headers=_headers(),
                )
                most.append(len(transport._pool.connections))
                return answer.status_code

            statuses = await asyncio.wait_for(
                asyncio.gather(*(call() for _ in range(60))), timeout=30
            )
            assert statuses == [200] * 60
            assert max(most) <= LIMITS.max_connections
            idle = [c for c in transport._pool.connections if c.is_idle()]
            assert len(idle) <= LIMITS.max_keepalive_connections


@pytest.mark.anyio
async def test_kept_alive_connections_are_reused() -> None:
    limits = httpx.Limits(max_connections=6, max_keepalive_connections=6)
    with Upstream(api_key=FAKE_KEY) as upstream:
        transport = AsyncGuardedTransport(_guard(upstream), limits)
        async with httpx.AsyncClient(transport=transport) as client:

            async def call() -> int:
                answer = await client.post(
                    upstream.base_url + "/chat/completions",
                    json=BODY,
                    headers=_headers(),
                )
                return answer.status_code

            for _ in range(5):
                assert await asyncio.gather(*(call() for _ in range(12))) == [200] * 12
        assert len({r.connection for r in upstream.requests}) <= 6
