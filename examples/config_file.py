"""Configure palyra from a TOML file, and read a `ConfigError`.

The script writes two files to a temporary directory: a good configuration
(a deterministic provider that answers offline, plus an OpenAI provider that is
configured but not called) and a bad one, whose error names each bad field.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

import palyra

GOOD = """\
[defaults]
chat = "local-chat"

[[providers]]
id = "local"
kind = "deterministic"

[[providers]]
id = "openai"
kind = "openai"                 # alias of openai_compatible
api_key_env = "OPENAI_API_KEY"  # read when a call needs it, never stored

[[models]]
id = "local-chat"
provider = "local"
context_window = 8192
aliases = ["default"]

[[models]]
id = "gpt-4o-mini"
provider = "openai"
context_window = 128000
max_output_tokens = 16384
pricing = { input = 0.15, output = 0.60 }
"""

BAD = """\
[[providers]]
id = "openai"
kind = "openai"
base_url = "http://api.example.com/v1"
api_key_env = "OPENAI_API_KEY"

[[models]]
id = "gpt-4o-mini"
provider = "openai"
temprature = 0.2
"""


def main(transport: httpx.BaseTransport | None = None) -> None:
    """Load a good and a bad configuration file.

    Args:
        transport: httpx transport for non-deterministic providers (unused
            here: the call goes to the in-process deterministic provider).
    """
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp, "palyra.toml")
        good.write_text(GOOD, encoding="utf-8")
        with palyra.Palyra.from_file(good, transport=transport) as client:
            print(client)
            for model in client.models():
                default = " (default)" if model.is_default else ""
                print(
                    f"  {model.id}: {model.role} on {model.owned_by}"
                    f" [{model.provider_kind}]{default}"
                )
            reply = client.chat([{"role": "user", "content": "Hi from a file"}])
            print(f"reply: {reply.choices[0].message.content}")
            assert reply.palyra is not None
            print(f"served by: {reply.palyra.provider}/{reply.palyra.model}")

        bad = Path(tmp, "bad.toml")
        bad.write_text(BAD, encoding="utf-8")
        try:
            palyra.Palyra.from_file(bad)
        except palyra.ConfigError as exc:
            print(f"\nConfigError: {exc}")
            print(f"bad fields: {[path for path, _ in exc.errors]}")


if __name__ == "__main__":
    main()
