"""Scheduled jobs with shared state: clients standing for several processes
drive the same job, and each fire runs in exactly one of them (the others
record it as skipped); with Redis down, fires run locally."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest

import palyra
from palyra._state import RedisState
from tests.servers import free_port

T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


def clients(url: str, n: int) -> list[palyra.Palyra]:
    return [palyra.Palyra(state=RedisState(url), ledger=False) for _ in range(n)]


def test_each_fire_runs_in_one_process(redis_url: str) -> None:
    ran: list[tuple[int, datetime]] = []
    lock = threading.Lock()
    made = clients(redis_url, 3)
    for i, c in enumerate(made):

        def job(ctx: palyra.JobContext, i: int = i) -> None:
            with lock:
                ran.append((i, ctx.scheduled_at))

        c.scheduler.add(job, id="tick", every=60)
    for minute in range(1, 4):
        now = T0 + timedelta(minutes=minute, seconds=1)
        threads = [
            threading.Thread(target=c.scheduler.run_pending, kwargs={"now": now})
            for c in made
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    fires = sorted(at for _, at in ran)
    assert len(fires) == len(set(fires)) == 3  # every fire once, no fire twice
    elsewhere = [
        r
        for c in made
        for r in c.scheduler.runs("tick")
        if r.outcome == "skipped" and r.error_type == "Elsewhere"
    ]
    assert len(elsewhere) == 6  # each fire recorded skipped by the two others
    for c in made:
        c.close()


@pytest.mark.anyio
async def test_an_async_job_is_claimed_from_a_worker_thread(redis_url: str) -> None:
    ran: list[str] = []
    a, b = clients(redis_url, 2)

    async def job(ctx: palyra.JobContext) -> None:
        ran.append(ctx.run_id)

    for c in (a, b):
        c.scheduler.add(job, id="async-tick", every=60)
    now = T0 + timedelta(minutes=1, seconds=1)
    await asyncio.gather(
        asyncio.to_thread(a.scheduler.run_pending, now),
        asyncio.to_thread(b.scheduler.run_pending, now),
    )
    assert len(ran) == 1
    await a.aclose()
    await b.aclose()


def test_with_redis_down_fires_run_locally() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    ran: list[int] = []
    c = palyra.Palyra(state=RedisState(url, connect_timeout=0.2), ledger=False)
    c.scheduler.add(lambda ctx: ran.append(1), id="tick", every=60)
    c.scheduler.run_pending(now=T0 + timedelta(minutes=1, seconds=1))
    assert ran == [1]
    c.close()
