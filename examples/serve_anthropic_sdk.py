"""palyra's /v1 surface under uvicorn, called with the official Anthropic SDK.

It starts the app on a free loopback port, makes an API token, sends a
message with a system prompt, streams one with the SDK's own helper and its
final-message accumulator, counts tokens, and stops. The offline
deterministic provider answers, so no key is needed: any registry model is
reachable through ``/v1/messages``, whatever its provider's dialect. Needs
the server extra and the SDK: ``pip install 'palyra[server]' anthropic``.

Run it with ``python examples/serve_anthropic_sdk.py``.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time

import palyra
from palyra.asgi import create_app

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [{"id": "assistant", "provider": "local"}],
}


def main() -> None:
    """Serve, call, stop."""
    try:
        import anthropic
        import uvicorn
    except ImportError as exc:
        sys.exit(
            f"this example needs {exc.name}: pip install 'palyra[server]' anthropic"
        )

    home = tempfile.mkdtemp(prefix="palyra-serve-")
    client = palyra.Palyra(CONFIG, home=home, ledger=palyra.MemoryLedger())
    _, secret = client.tokens.create("example", agent="claude-sdk")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(client), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    sdk = anthropic.Anthropic(api_key=secret, base_url=f"http://127.0.0.1:{port}")
    try:
        ask = [{"role": "user", "content": "Say hello to the Anthropic SDK"}]
        reply = sdk.messages.create(
            model="assistant", max_tokens=64, system="Be brief.", messages=ask
        )
        print("message:", reply.content[0].text, "| stop:", reply.stop_reason)
        with sdk.messages.stream(
            model="assistant", max_tokens=64, messages=ask
        ) as stream:
            pieces = list(stream.text_stream)
            final = stream.get_final_message()
        print(
            f"stream: {len(pieces)} pieces, final usage {final.usage.output_tokens} out"
        )
        counted = sdk.messages.count_tokens(model="assistant", messages=ask)
        print("count_tokens:", counted.input_tokens)
        print("ledger:", [(r.agent, r.status) for r in client.usage.records()])
    finally:
        sdk.close()
        server.should_exit = True
        thread.join(timeout=20)


if __name__ == "__main__":
    main()
