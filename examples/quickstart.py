"""palyra in two minutes: offline, no API keys, no network.

``palyra.Palyra()`` with no configuration serves every call from the built-in
deterministic provider: an OpenAI-compatible upstream that lives in-process and
echoes the last user message. The requests still go through the same pipeline,
token estimator, adapter and stream parser as a real provider would use.

Run it with::

    python examples/quickstart.py
"""

from __future__ import annotations

import json
import math

import palyra
from palyra import PalyraInfo

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def served_by(info: PalyraInfo | None) -> str:
    """One line naming who served a call."""
    assert info is not None
    return f"served by: provider={info.provider} model={info.model}"


def heading(number: int, title: str) -> None:
    """Print a section heading."""
    print(f"\n{number}. {title}")


def chat(client: palyra.Palyra) -> None:
    """A plain chat reply, with its usage and the pre-dispatch token estimate."""
    heading(1, "Chat (the deterministic provider echoes your last message)")
    question = "Hello, palyra! What can you do?"
    reply = client.chat([{"role": "user", "content": question}])
    usage = reply.usage
    assert usage is not None
    assert reply.palyra is not None
    print(f"   you:       {question}")
    print(f"   assistant: {reply.choices[0].message.content}")
    print(
        f"   usage:     {usage.prompt_tokens} prompt + {usage.completion_tokens}"
        f" completion = {usage.total_tokens} tokens"
    )
    print(f"   {served_by(reply.palyra)}")

    heading(2, "Token estimate (made before the request was sent)")
    estimate = reply.palyra.token_estimate
    assert estimate is not None
    kind = "approximate" if estimate.approximate else "exact"
    print(
        f"   ~{estimate.prompt_tokens} prompt tokens, {kind},"
        f" encoding {estimate.encoding}"
    )
    if estimate.encoding == "heuristic":
        print("   (tiktoken is unavailable: about four bytes of text per token)")
    elif estimate.approximate:
        print(
            f"   ({reply.palyra.upstream_model!r} has no tiktoken encoding of its"
            f" own, so the bundled {estimate.encoding} stands in)"
        )


def stream(client: palyra.Palyra) -> None:
    """A streamed reply, printed piece by piece as the chunks arrive."""
    heading(3, "Streaming")
    text = "Streaming sends the answer in small pieces, so you can show it early."
    pieces = 0
    print("   assistant: ", end="", flush=True)
    with client.stream([{"role": "user", "content": text}]) as chunks:
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
                print(f"[{chunk.choices[0].delta.content}]", end="", flush=True)
    print()
    usage = chunks.usage
    assert usage is not None
    print(f"   {pieces} pieces, {usage.total_tokens} tokens in all")
    print(f"   {served_by(chunks.palyra)}")


def embed(client: palyra.Palyra) -> None:
    """An embedding: its size and first values."""
    heading(4, "Embedding")
    text = "The quick brown fox jumps over the lazy dog"
    result = client.embed(text)
    vector = result.data[0].embedding
    first = ", ".join(f"{x:+.3f}" for x in vector[:6])
    length = math.sqrt(sum(x * x for x in vector))
    print(f"   text:       {text!r}")
    print(f"   dimensions: {len(vector)} (unit length: {length:.3f})")
    print(f"   first values: [{first}, ...]")
    print(f"   {served_by(result.palyra)}")


def tool_call(client: palyra.Palyra) -> None:
    """A scripted tool call, answered with a tool result."""
    heading(5, "Tool call (scripted with client.deterministic().enqueue)")
    backend = client.deterministic()
    backend.enqueue(
        tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]
    )
    backend.enqueue("It is 18 degrees and sunny in Paris.")

    messages: list[dict[str, object]] = [
        {"role": "user", "content": "What is the weather in Paris?"}
    ]
    first = client.chat(messages, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert message.tool_calls
    call = message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    print(f"   finish_reason: {first.choices[0].finish_reason}")
    print(f"   model asks:    {call.function.name}({arguments})")

    result = {"city": arguments["city"], "celsius": 18, "sky": "sunny"}
    messages.append(message.model_dump(exclude_none=True))
    messages.append(
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
    )
    final = client.chat(messages, tools=[WEATHER_TOOL])
    print(f"   tool result:   {result}")
    print(f"   assistant:     {final.choices[0].message.content}")
    print(f"   {served_by(final.palyra)}")
    recorded = len(backend.history)
    print(f"   requests recorded in client.deterministic().history: {recorded}")


def main() -> None:
    """Run every step against the offline deterministic provider."""
    print(f"palyra {palyra.__version__} quickstart: offline, no API keys")
    with palyra.Palyra() as client:
        chat(client)
        stream(client)
        embed(client)
        tool_call(client)
    print("\nDone. Next: docs/configuration.md to add a real provider.")


if __name__ == "__main__":
    main()
