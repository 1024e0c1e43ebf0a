"""The uvicorn app factory of the gateway benchmark: palyra's ``/v1``
surface over one OpenAI-compatible provider at ``BENCH_UPSTREAM`` (a
loopback base URL), as ``palyra serve`` would build it. ``BENCH_LEDGER=0``
turns the ledger off, ``BENCH_AUTH=0`` the token check (both on by default,
as ``palyra serve`` runs)."""

from __future__ import annotations

import os
from typing import Any

import palyra
from palyra.asgi import create_app


def config() -> dict[str, Any]:
    """One provider, one priced model, and a budget that is never reached."""
    return {
        "providers": [
            {
                "id": "up",
                "kind": "openai",
                "base_url": os.environ["BENCH_UPSTREAM"],
                "api_key_env": "BENCH_UPSTREAM_KEY",
            }
        ],
        "models": [
            {
                "id": "gpt-4o-mini",
                "provider": "up",
                "pricing": {"input": "0.15", "output": "0.6"},
            }
        ],
        "budgets": [{"id": "all", "scope": "global", "hard_limit": "1000000"}],
    }


def client() -> palyra.Palyra:
    """The client the surface serves (its home is ``PALYRA_HOME``)."""
    ledger = None if os.environ.get("BENCH_LEDGER", "1") == "1" else False
    return palyra.Palyra(config(), ledger=ledger)


def app() -> Any:
    """The factory uvicorn calls in its worker."""
    return create_app(client(), require_auth=os.environ.get("BENCH_AUTH", "1") == "1")
