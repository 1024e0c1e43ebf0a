"""Streaming, offline: chunks as they come, the whole answer and its usage
at the end, the async twin, and leaving a stream early.

The deterministic provider answers in-process. Run it with
``python examples/streaming.py``.
"""

from __future__ import annotations

import asyncio

import palyra

ASK = [{"role": "user", "content": "Stream this sentence back to me word by word"}]


def main() -> None:
    with palyra.Palyra(ledger=palyra.MemoryLedger()) as client:
        with client.stream(ASK) as stream:
            pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        print(f"{len(pieces)} chunks: {''.join(pieces)!r}")
        assert stream.completion is not None
        print("finish:", stream.completion.choices[0].finish_reason)
        print("usage:", stream.usage.total_tokens if stream.usage else None, "tokens")

        async def twice() -> str:
            async with await client.astream(ASK) as chunks:
                return "".join([c.choices[0].delta.content or "" async for c in chunks])

        print("async:", asyncio.run(twice()) == "".join(pieces))
        with client.stream(ASK) as early:
            first = next(iter(early))
        print("left after one chunk:", first.choices[0].delta.content is not None)
        print("ledger:", [r.status for r in client.usage.records()])


if __name__ == "__main__":
    main()
