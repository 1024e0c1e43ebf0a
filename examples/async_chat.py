"""Async calls run concurrently: a chat, a stream and an embedding at once.

Every sync method of `palyra.Palyra` has an async twin (`achat`, `astream`,
`aembed`, `atranscribe`) driving the same pipeline, so they behave the same.

By default this runs offline on the deterministic provider. Pass an
``httpx.MockTransport`` (or any transport that also serves async requests) to
run the same code against an OpenAI-compatible server on localhost instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

import palyra

# A local OpenAI-compatible server (vLLM, llama.cpp, Ollama...) that needs no key.
LOCAL_SERVER: dict[str, Any] = {
    "providers": [
        {
            "id": "local",
            "kind": "openai_compatible",
            "base_url": "http://localhost:8000/v1",
            "auth_header": "none",
        }
    ],
    "models": [
        {"id": "local-chat", "provider": "local", "context_window": 32768},
        {"id": "local-embed", "provider": "local", "role": "embeddings"},
    ],
}


async def ask(client: palyra.Palyra, question: str) -> str:
    """A whole answer at once."""
    reply = await client.achat([{"role": "user", "content": question}])
    return reply.choices[0].message.content or ""


async def stream(client: palyra.Palyra, question: str) -> list[str]:
    """The pieces of a streamed answer, in the order they arrived."""
    pieces = []
    messages = [{"role": "user", "content": question}]
    async with await client.astream(messages) as chunks:
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    return pieces


async def embed(client: palyra.Palyra, texts: list[str]) -> list[int]:
    """The size of each embedding vector."""
    result = await client.aembed(texts)
    return [len(item.embedding) for item in result.data]


async def run(client: palyra.Palyra) -> None:
    """Start all three calls together and wait for every one."""
    answer, pieces, sizes = await asyncio.gather(
        ask(client, "Hello from asyncio"),
        stream(client, "Streams and chats can run side by side."),
        embed(client, ["first text", "second text"]),
    )
    print(f"achat:   {answer}")
    print(f"astream: {len(pieces)} pieces -> {''.join(pieces)}")
    print(f"aembed:  {len(sizes)} vectors of {sizes[0]} dimensions")


def main(transport: httpx.BaseTransport | None = None) -> None:
    """Run the concurrent calls (offline unless a transport is given).

    Args:
        transport: Serves the async HTTP calls (``httpx.MockTransport`` serves
            both sync and async); None uses the deterministic provider.
    """
    if transport is None:
        client = palyra.Palyra()
    else:
        assert isinstance(transport, httpx.AsyncBaseTransport)
        client = palyra.Palyra(LOCAL_SERVER, async_transport=transport)

    async def session() -> None:
        async with client:  # closes the async connections at the end
            await run(client)

    asyncio.run(session())


if __name__ == "__main__":
    main()
