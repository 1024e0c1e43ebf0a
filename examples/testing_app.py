"""Testing an app built on palyra, with `palyra.testing`: the app's real
provider configuration, answered by an in-memory OpenAI-compatible upstream
(`OpenAIMock`), with scripted replies, a scripted failure and failover, and
assertions on what the app sent. No network, no key.

In a test suite the same lines go in a pytest test; here they run as a
script: ``python examples/testing_app.py``.
"""

from __future__ import annotations

import palyra
from palyra.testing import OpenAIMock

# The app's configuration, as in production (the key's variable need not be set:
# the mock transport replaces the network).
CONFIG = {
    "providers": [
        {
            "id": "openai",
            "kind": "openai_compatible",
            "base_url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
            "max_retries": 0,
        },
    ],
    "models": [
        {"id": "gpt-4o-mini", "provider": "openai", "fallbacks": ["gpt-4o"]},
        {"id": "gpt-4o", "provider": "openai"},
    ],
}


def summarise(client: palyra.Palyra, text: str) -> str:
    """The app's code under test."""
    reply = client.chat(
        [{"role": "user", "content": f"Summarise: {text}"}], model="gpt-4o-mini"
    )
    return reply.choices[0].message.content or ""


def main() -> None:
    mock = OpenAIMock()
    client = palyra.Palyra(
        CONFIG,
        transport=mock.transport,
        credentials=lambda provider: "sk-test-key-0123456789",
        ledger=palyra.MemoryLedger(),
    )
    with client:
        mock.enqueue("A short summary.")
        assert summarise(client, "a long text") == "A short summary."
        sent = mock.history[-1]
        assert sent["model"] == "gpt-4o-mini"
        print(
            "scripted reply: ok; the app sent",
            sent["messages"][0]["content"][:20] + "...",
        )
        mock.enqueue(status=503, error="overloaded")  # the first model fails ...
        mock.enqueue("From the fallback.")  # ... and its fallback answers
        assert summarise(client, "again") == "From the fallback."
        info = client.usage.records()[-1]
        print("failover: served by", info.model, "after", info.attempts, "attempts")


if __name__ == "__main__":
    main()
