"""Tools, offline: a tool call, the tool's answer sent back, the final reply.

The deterministic provider is scripted (`client.deterministic().enqueue`) to
ask for the tool, as a real model would; the loop is the same against any
provider. Run it with ``python examples/tools.py``.
"""

from __future__ import annotations

import json

import palyra

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city now",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def weather(city: str) -> dict[str, object]:
    return {"city": city, "celsius": 21, "sky": "clear"}


def main() -> None:
    with palyra.Palyra(ledger=palyra.MemoryLedger()) as client:
        scripted = client.deterministic()
        scripted.enqueue(
            tool_calls=[{"name": "weather", "arguments": {"city": "Prague"}}]
        )
        scripted.enqueue("It is 21 °C and clear in Prague.")
        messages: list[dict[str, object]] = [
            {"role": "user", "content": "What is the weather in Prague?"}
        ]
        reply = client.chat(messages, tools=[WEATHER])
        choice = reply.choices[0]
        print("finish:", choice.finish_reason)
        calls = choice.message.tool_calls or []
        messages.append(choice.message.model_dump(exclude_none=True))
        for call in calls:
            arguments = json.loads(call.function.arguments)
            print(f"the model calls {call.function.name}({arguments})")
            result = weather(**arguments)
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
            )
        final = client.chat(messages, tools=[WEATHER])
        print("answer:", final.choices[0].message.content)


if __name__ == "__main__":
    main()
