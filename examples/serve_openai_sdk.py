"""palyra's /v1 surface under uvicorn, called with the official OpenAI SDK.

It starts the app on a free loopback port, makes an API token, asks a
question, streams an answer with the SDK's own helper, lists the models, and
stops. The offline deterministic provider answers, so no key is needed;
point `CONFIG` at your own providers for real models. Needs the server extra
and the SDK: ``pip install 'palyra[server]' openai``.

Run it with ``python examples/serve_openai_sdk.py``.
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
    "models": [
        {"id": "assistant", "provider": "local", "pricing": {"input": 1, "output": 2}}
    ],
}


def main() -> None:
    """Serve, call, stop."""
    try:
        import openai
        import uvicorn
    except ImportError as exc:
        sys.exit(f"this example needs {exc.name}: pip install 'palyra[server]' openai")

    home = tempfile.mkdtemp(prefix="palyra-serve-")  # the token file goes here
    client = palyra.Palyra(CONFIG, home=home, ledger=palyra.MemoryLedger())
    info, secret = client.tokens.create("example", agent="sdk-example")
    print(f"token {info.id} for agent {info.agent} (the secret is shown once)")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(client), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        sdk = openai.OpenAI(api_key=secret, base_url=f"http://127.0.0.1:{port}/v1")
        question = [{"role": "user", "content": "Say hello to the SDK"}]
        reply = sdk.chat.completions.create(model="assistant", messages=question)
        print("chat:", reply.choices[0].message.content)
        with sdk.chat.completions.stream(
            model="assistant", messages=question
        ) as stream:
            pieces = [e.delta for e in stream if e.type == "content.delta"]
        print(f"stream: {len(pieces)} pieces: {''.join(pieces)!r}")
        print("models:", [m.id for m in sdk.models.list()])
        print("ledger:", [(r.agent, r.model, r.status) for r in client.usage.records()])
    finally:
        server.should_exit = True
        thread.join(timeout=20)


if __name__ == "__main__":
    main()
