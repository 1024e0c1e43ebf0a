"""Call an OpenAI-compatible provider: chat, a stream with usage, embeddings.

The configuration holds no secret: ``api_key_env`` names the environment
variable palyra reads on every call. Point ``base_url`` at any other
OpenAI-compatible server (Azure OpenAI proxies, vLLM, llama.cpp, Ollama...).

    export OPENAI_API_KEY=sk-...
    python examples/openai_compatible.py

Without the variable the script says what to set and exits cleanly. Tests run
`main` with an ``httpx.MockTransport`` instead of the network.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

import palyra

CONFIG: dict[str, Any] = {
    "providers": [
        {
            "id": "openai",
            "kind": "openai_compatible",
            "base_url": "https://api.openai.com/v1",  # the default for this kind
            "api_key_env": "OPENAI_API_KEY",
            "timeout": 30,
        }
    ],
    "models": [
        {
            "id": "gpt-4o-mini",
            "provider": "openai",
            "context_window": 128000,
            "max_output_tokens": 16384,
            "aliases": ["fast"],
        },
        {
            "id": "text-embedding-3-small",
            "provider": "openai",
            "role": "embeddings",
            "dimensions": 256,
        },
    ],
}


def main(transport: httpx.BaseTransport | None = None) -> None:
    """Chat, stream and embed through an OpenAI-compatible provider.

    Args:
        transport: httpx transport for the calls (tests pass an
            ``httpx.MockTransport``); None means the real network.
    """
    if transport is None and not os.environ.get("OPENAI_API_KEY", "").strip():
        print("OPENAI_API_KEY is not set, so there is nothing to call.")
        print("Set it and run again:  export OPENAI_API_KEY=sk-...")
        print("(Or run examples/quickstart.py, which needs no key.)")
        return

    with palyra.Palyra(CONFIG, transport=transport) as client:
        reply = client.chat(
            [
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": "What is an embedding?"},
            ],
            model="fast",  # an alias of gpt-4o-mini
            temperature=0.2,
            max_completion_tokens=60,
        )
        info = reply.palyra
        assert info is not None
        print(f"chat:   {reply.choices[0].message.content}")
        print(f"        provider={info.provider} model={info.model}", end=" ")
        print(f"request_id={info.attempts[-1].request_id}")

        print("stream: ", end="", flush=True)
        messages = [{"role": "user", "content": "Count to five."}]
        with client.stream(messages, stream_options={"include_usage": True}) as chunks:
            for chunk in chunks:
                if chunk.choices:
                    print(chunk.choices[0].delta.content or "", end="", flush=True)
                elif chunk.usage is not None:  # the usage-only chunk asked for
                    print(f"\n        usage: {chunk.usage.total_tokens} tokens")

        result = client.embed(["palyra", "one client for many providers"])
        sizes = [len(item.embedding) for item in result.data]
        print(f"embed:  {len(sizes)} vectors of {sizes[0]} dimensions")


if __name__ == "__main__":
    main()
