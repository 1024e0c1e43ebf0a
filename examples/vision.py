"""Vision, offline: an image sent with a question, to a model declared able to
see. A model that cannot is refused before any request is sent.

The deterministic provider answers in-process (it echoes the text parts).
Run it with ``python examples/vision.py``.
"""

from __future__ import annotations

import base64

import palyra

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {"id": "eyes", "provider": "local", "capabilities": {"vision": True}},
        {"id": "text-only", "provider": "local"},
    ],
}
# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def main() -> None:
    image = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
    }
    ask = [
        {"role": "user", "content": [{"type": "text", "text": "What is in it?"}, image]}
    ]
    with palyra.Palyra(CONFIG, ledger=palyra.MemoryLedger()) as client:
        print("eyes:", client.chat(ask, model="eyes").choices[0].message.content)
        try:
            client.chat(ask, model="text-only")
        except palyra.UnsupportedCapabilityError as exc:
            print("text-only refused:", exc.capability)


if __name__ == "__main__":
    main()
