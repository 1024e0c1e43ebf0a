"""A stream iterated straight from the call, with no name kept for it
(``for chunk in client.stream(...)``, ``async for chunk in await
client.astream(...)``): the loop holds the stream, so its finalizer never
takes it for one dropped unread and closes it mid-read; it ends once, as
finished, and the ledger says so."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import chunk_json, upstream_config
from tests.upstream import Reply, Upstream

pytestmark = pytest.mark.anyio
HI = [{"role": "user", "content": "say hi"}]
CHUNKS = [chunk_json("Hel"), chunk_json("lo"), chunk_json(None, "stop"), "[DONE]"]


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    with Upstream(api_key=FAKE_KEY) as server:
        yield server


async def test_an_async_stream_read_with_no_name_kept(up: Upstream) -> None:
    ledger = palyra.MemoryLedger()
    kinds: list[str] = []
    c = palyra.Palyra(
        upstream_config(up.base_url),
        ledger=ledger,
        on_event=lambda e: kinds.append(e.kind),
    )
    up.enqueue(Reply(sse=CHUNKS, chunk_delay=0.05), Reply(sse=CHUNKS, chunk_delay=0.05))
    text = ""
    async for chunk in await c.astream(HI):
        text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "Hello"
    async for _ in await c.astream(HI):
        break  # left early: dropped, closed on the loop, reported once
    for _ in range(100):  # the finalizer's closing runs on the loop
        if len(ledger.records()) == 2:
            break
        await asyncio.sleep(0.02)
    assert c.flush(5)
    assert [r.status for r in ledger.records()] == ["ok", "cancelled"]
    assert kinds == ["start", "first_token", "end", "start", "first_token", "cancelled"]
    await c.aclose()


def test_a_stream_read_with_no_name_kept(up: Upstream) -> None:
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(upstream_config(up.base_url), ledger=ledger)
    up.enqueue(Reply(sse=CHUNKS, chunk_delay=0.05))
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in c.stream(HI) if chunk.choices
    )
    assert text == "Hello"
    assert [r.status for r in ledger.records()] == ["ok"]
    c.close()
