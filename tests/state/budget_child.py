"""One process of the scale-out tests: a client on the shared Redis and the
shared ledger, making concurrent calls to a loopback upstream; prints what
happened as one JSON line.

    python -m tests.state.budget_child SPEC_JSON

SPEC: redis (URL), base_url, ledger (SQLite path), calls, mode ("threads"
or "tasks"), budgets, on_unavailable, margin, pause (seconds between calls
per worker), hold (seconds to wait before exiting, with calls in flight).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import palyra
from palyra._state import RedisState, StateUnavailableError

USER = [{"role": "user", "content": "three words here"}]
MAX_TOKENS = 10


def config(spec: dict[str, Any]) -> dict[str, Any]:
    """gpt-4o-mini on the loopback upstream at $1 / $2 per 1M tokens."""
    return {
        "providers": [
            {
                "id": "up",
                "kind": "openai",
                "base_url": spec["base_url"],
                "api_key_env": "UP_KEY",
                "timeout": spec.get("timeout", 10),
                "max_retries": 0,
            }
        ],
        "models": [
            {
                "id": "gpt-4o-mini",
                "provider": "up",
                "context_window": 128000,
                "pricing": {"input": "1", "output": "2"},
                "fallbacks": [],
            }
        ],
        "budgets": spec["budgets"],
        "ledger": {"path": spec["ledger"]},
        # A reservation lives for its call's deadline plus the margin.
        "resilience": {"deadline": spec.get("deadline", 300)},
    }


def outcome(call: Any) -> str:
    try:
        call()
    except palyra.BudgetExceededError:
        return "refused"
    except StateUnavailableError:
        return "unavailable"
    except palyra.PalyraError as exc:
        return f"error:{type(exc).__name__}"
    return "ok"


def main() -> None:
    spec = json.loads(sys.argv[1])
    os.environ["UP_KEY"] = spec["key"]
    state = RedisState(
        spec["redis"],
        on_unavailable=spec.get("on_unavailable"),
        reservation_margin=spec.get("margin", 30.0),
        retry_interval=spec.get("retry_interval", 0.2),
    )
    client = palyra.Palyra(config(spec), state=state)
    pause = spec.get("pause", 0.0)
    seen: Counter[str] = Counter()
    calls, workers = spec["calls"], spec.get("workers", spec["calls"])
    if spec["mode"] == "threads":

        def one(_: int) -> str:
            time.sleep(pause)
            return outcome(lambda: client.chat(USER, max_tokens=MAX_TOKENS))

        with ThreadPoolExecutor(workers) as pool:
            seen.update(pool.map(one, range(calls)))
    else:

        async def run() -> None:
            limit = asyncio.Semaphore(workers)

            async def one() -> str:
                async with limit:
                    await asyncio.sleep(pause)
                    try:
                        await client.achat(USER, max_tokens=MAX_TOKENS)
                    except palyra.BudgetExceededError:
                        return "refused"
                    except StateUnavailableError:
                        return "unavailable"
                    except palyra.PalyraError as exc:
                        return f"error:{type(exc).__name__}"
                    return "ok"

            seen.update(await asyncio.gather(*(one() for _ in range(calls))))
            await client.aclose()

        asyncio.run(run())
    client.close()
    print(json.dumps(dict(seen)), flush=True)


if __name__ == "__main__":
    main()
