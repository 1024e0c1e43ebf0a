"""Connect an API key once: palyra checks it, keeps it in the OS keyring, uses it.

The script starts its own OpenAI-compatible server on 127.0.0.1 (the standard
library's ``http.server``, in a thread). It answers ``GET /v1/models`` and
``POST /v1/chat/completions``, and only for its one key, sent with Bearer:
anything else gets a 401. Against it, the script

1. tries a wrong key: refused with ``AuthenticationError``, nothing stored;
2. connects the right one as the auth profile ``demo-work``;
3. lists the profiles, their health, and what is on disk (no key there);
4. chats through the profile: the config holds no key at all;
5. rotates the key (the server issues a new one; connecting again with the
   same profile id replaces the old one in place);
6. revokes the profile: its secret and its metadata are gone.

Run it with::

    python examples/auth_api_key.py            # secrets in the OS keyring
    python examples/auth_api_key.py --memory   # secrets in memory only

``PALYRA_EXAMPLE_MEMORY=1`` does the same as ``--memory``. With the OS keyring,
the key is written under the service name ``palyra`` (user name
``demo-work:api_key``) and deleted again by the revoke at the end. A keyring
that cannot be used stops the script with palyra's ``VaultError``, which says
how to fix it: palyra never falls back to another store by itself. The profile
file goes to a temporary directory, never to your real palyra home.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import palyra

PROFILE = "demo-work"
HELLO = [{"role": "user", "content": "Hello through a profile"}]


class Provider(ThreadingHTTPServer):
    """A tiny OpenAI-compatible provider on 127.0.0.1 that accepts one key."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.key = "sk-demo-" + secrets.token_hex(12)
        self.seen: list[str] = []  # "GET /v1/models 200"...

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``.../v1``)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def rotate(self) -> str:
        """Issue a new key, as a provider's console does; the old one stops."""
        self.key = "sk-demo-" + secrets.token_hex(12)
        return self.key


class _Handler(BaseHTTPRequestHandler):
    server: Provider

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            self._reply(404, _error("no such route", "not_found"))
        elif self._authorized():
            models = {
                "object": "list",
                "data": [{"id": "demo-chat", "object": "model"}],
            }
            self._reply(200, models)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            self._reply(404, _error("no such route", "not_found"))
        elif self._authorized():
            text = body["messages"][-1]["content"]
            self._reply(200, _completion(body["model"], f"echo: {text}"))

    def _authorized(self) -> bool:
        given = self.headers.get("authorization", "")
        if secrets.compare_digest(given, f"Bearer {self.server.key}"):
            return True
        self._reply(401, _error("Incorrect API key provided", "invalid_api_key"))
        return False

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.server.seen.append(f"{self.command} {self.path} {status}")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the script prints what matters


def _error(message: str, code: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "code": code}
    }


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9},
    }


@contextmanager
def running() -> Iterator[Provider]:
    """The provider, serving in a thread until the block ends."""
    server = Provider()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def choose_vault(argv: list[str]) -> palyra.SecretStore:
    """The OS keyring, unless ``--memory`` or ``PALYRA_EXAMPLE_MEMORY=1``."""
    if "--memory" in argv or os.environ.get("PALYRA_EXAMPLE_MEMORY") == "1":
        return palyra.MemorySecretStore()
    return palyra.KeyringSecretStore()


def main(argv: list[str] | None = None) -> int:
    """Run the tour; 1 if the vault cannot be used."""
    vault = choose_vault(sys.argv[1:] if argv is None else argv)
    where = (
        "memory" if isinstance(vault, palyra.MemorySecretStore) else "the OS keyring"
    )
    with running() as provider, tempfile.TemporaryDirectory() as home:
        config = {
            # No api_key_env, no api_key: the key comes from the auth profile.
            "providers": [
                {"id": "demo", "kind": "openai", "base_url": provider.base_url}
            ],
            "models": [{"id": "demo-chat", "provider": "demo"}],
        }
        with palyra.Palyra(config, secrets=vault, home=home) as client:
            try:
                tour(client, provider, Path(home), vault)
            except palyra.VaultError as exc:
                print(f"\n{where[0].upper()}{where[1:]} cannot be used here:")
                say(str(exc))
                print("Run again with --memory to keep the secrets in memory.")
                return 1
            finally:
                clean_up(vault)
    return 0


def clean_up(vault: palyra.SecretStore) -> None:
    """Leave nothing behind in a real keyring, even after a failure mid-way
    (after the revoke at the end there is nothing left to delete)."""
    with suppress(palyra.VaultError):
        vault.delete(f"{PROFILE}:api_key")


def say(text: str) -> None:
    """Print a long message wrapped, indented under the step."""
    print(textwrap.fill(text, 88, initial_indent="   ", subsequent_indent="     "))


def tour(
    client: palyra.Palyra, provider: Provider, home: Path, vault: palyra.SecretStore
) -> None:
    """The six steps of the module docstring."""
    where = (
        "memory" if isinstance(vault, palyra.MemorySecretStore) else "the OS keyring"
    )
    print(f"provider: {provider.base_url}   secrets: in {where}")

    print("\n1. A wrong key is refused before anything is stored")
    try:
        client.auth.connect_api_key("demo", "sk-wrong-0123456789", profile_id=PROFILE)
    except palyra.AuthenticationError as exc:
        say(f"{type(exc).__name__} (HTTP {exc.status_code}): {exc.message}")
    print(f"   profiles: {[p.id for p in client.auth.list()]}")

    print("\n2. The right key is checked (GET /v1/models), then kept")
    profile = client.auth.connect_api_key("demo", provider.key, name="work")
    print(
        f"   connected: {profile.id} (provider={profile.provider}, kind={profile.kind})"
    )
    print(f"   the server saw: {provider.seen}")

    print("\n3. What lives where")
    for p in client.auth.health():
        print(f"   {p.id}: health={p.health}, scope={p.scope}, name={p.name}")
    file = home / "auth_profiles.json"
    text = file.read_text()
    print(f"   {file.name}: mode {stat.S_IMODE(file.stat().st_mode):o},", end=" ")
    print(f"holds the key: {provider.key in text}")
    held = vault.get(f"{PROFILE}:api_key") == provider.key
    if isinstance(vault, palyra.KeyringSecretStore):
        print(
            f"   the OS keyring holds it (service 'palyra', user '{PROFILE}:api_key'):",
            end=" ",
        )
    else:
        print(f"   memory holds it (under '{PROFILE}:api_key'):", end=" ")
    print(held)

    print("\n4. A chat through the profile (the config names no key)")
    reply = client.chat(HELLO)
    print(f"   assistant: {reply.choices[0].message.content}")

    print("\n5. Rotation: the provider issues a new key; the old one stops working")
    new_key = provider.rotate()
    try:
        client.chat(HELLO)
    except palyra.AuthenticationError as exc:
        print(f"   with the old key: {type(exc).__name__} (HTTP {exc.status_code})")
    rotated = client.auth.connect_api_key("demo", new_key, profile_id=PROFILE)
    same = rotated.created_at == profile.created_at
    print(f"   connected again as {rotated.id}: same created_at: {same},", end=" ")
    print(f"updated_at moved on: {rotated.updated_at > profile.updated_at}")
    print(f"   with the new key: {client.chat(HELLO).choices[0].message.content}")

    print("\n6. Revoke: the secret and the profile are deleted")
    client.auth.revoke(PROFILE)
    print(f"   profiles: {[p.id for p in client.auth.list()]}")
    still = vault.get(f"{PROFILE}:api_key") is not None
    print(f"   the vault still holds the key: {still}")
    try:
        client.chat(HELLO)
    except palyra.CredentialError as exc:
        say(f"a chat now: {type(exc).__name__}: {exc.message}")
    print("   (an API key is revoked for good in the provider's console)")


if __name__ == "__main__":
    sys.exit(main())
