"""One process of the shared-breaker tests: at ``start_at`` (wall clock),
``calls`` concurrent calls to the loopback upstream; prints the outcome of
each, by class, as one JSON line.

    python -m tests.state.breaker_child SPEC_JSON
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import palyra
from palyra._state import RedisState

USER = [{"role": "user", "content": "ping"}]


def config(spec: dict[str, Any]) -> dict[str, Any]:
    """One loopback provider whose breaker opens after 2 failures for 2 s."""
    return {
        "providers": [
            {
                "id": "up",
                "kind": "openai",
                "base_url": spec["base_url"],
                "api_key_env": "UP_KEY",
                "max_retries": 0,
                "timeout": 10,
                "circuit_breaker_threshold": 2,
                "circuit_breaker_cooldown": spec.get("cooldown", 2.0),
            }
        ],
        "models": [{"id": "gpt-4o-mini", "provider": "up", "fallbacks": []}],
        "ledger": False,
    }


def outcome(client: palyra.Palyra) -> str:
    try:
        client.chat(USER)
    except palyra.PalyraError as exc:
        return type(exc).__name__
    return "ok"


def main() -> None:
    spec = json.loads(sys.argv[1])
    os.environ["UP_KEY"] = spec["key"]
    client = palyra.Palyra(config(spec), state=RedisState(spec["redis"]))
    first = outcome(client) if spec.get("probe_first") else None
    time.sleep(max(spec["start_at"] - time.time(), 0))
    with ThreadPoolExecutor(spec["calls"]) as pool:
        seen = Counter(pool.map(lambda _: outcome(client), range(spec["calls"])))
    client.close()
    print(json.dumps({"first": first, "burst": dict(seen)}), flush=True)


if __name__ == "__main__":
    main()
