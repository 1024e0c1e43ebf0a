"""Typed errors: what failed, where, and whether any HTTP request was sent.

Runs offline. The deterministic provider is scripted to answer 429 and 500;
the other errors are raised by palyra itself before any request is sent.
"""

from __future__ import annotations

import httpx

import palyra

HELLO = [{"role": "user", "content": "Hello"}]


def status_errors(client: palyra.Palyra) -> None:
    """Scripted upstream failures map to `APIStatusError` subclasses."""
    backend = client.deterministic()
    # Each error is scripted once per attempt: the provider retries twice.
    backend.enqueue(status=429, error="Rate limit reached; retry in 2s", times=3)
    backend.enqueue(status=500, error="The upstream fell over", times=3)

    try:
        client.chat(HELLO)
    except palyra.RateLimitError as exc:
        print(f"RateLimitError: {exc}")
        print(
            f"  provider={exc.provider} model={exc.model}"
            f" status={exc.status_code} request_id={exc.request_id}"
        )

    try:
        client.chat(HELLO)
    except palyra.APIStatusError as exc:  # any non-2xx answer
        print(f"{type(exc).__name__} (HTTP {exc.status_code}): {exc.message}")

    reply = client.chat(HELLO)  # the queue is empty again: back to echoing
    print(f"next call succeeds: {reply.choices[0].message.content!r}")


def context_window(client: palyra.Palyra) -> None:
    """A prompt that cannot fit is refused before any HTTP request."""
    sent = len(client.deterministic().history)
    long_prompt = [{"role": "user", "content": "word " * 10_000}]
    try:
        client.chat(long_prompt, max_tokens=500)
    except palyra.ContextWindowExceededError as exc:
        print(f"ContextWindowExceededError: {exc}")
        print(
            f"  ~{exc.prompt_tokens} prompt + {exc.requested_output_tokens} output"
            f" > {exc.context_window}"
        )
    unchanged = len(client.deterministic().history) == sent
    print(f"  no request was sent: {unchanged}")


def unsupported_capability(client: palyra.Palyra) -> None:
    """An image sent to a model without vision is refused before any HTTP."""
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ],
    }
    try:
        client.chat([message])
    except palyra.UnsupportedCapabilityError as exc:
        print(f"UnsupportedCapabilityError: {exc}")
        print(f"  missing capability: {exc.capability}")


def main(transport: httpx.BaseTransport | None = None) -> None:
    """Trigger and catch each kind of error.

    Args:
        transport: httpx transport for non-deterministic providers (unused
            here: every call goes to the in-process deterministic provider).
    """
    with palyra.Palyra(transport=transport) as client:
        status_errors(client)
        print()
        context_window(client)
        print()
        unsupported_capability(client)
        print()
        try:
            client.chat(HELLO, model="gpt-5")
        except palyra.PalyraError as exc:  # the root of everything palyra raises
            print(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
