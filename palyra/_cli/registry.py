"""``palyra models`` (the registry with capabilities, prices, health and
breaker state) and ``palyra route`` (a routing decision explained, no
provider called)."""

from __future__ import annotations

import argparse
from typing import Any

from .dispatch import client_from
from .output import emit_json, table

__all__ = ["run"]

_CAPS = (("streaming", "stream"), ("tools", "tools"), ("json_mode", "json"),
         ("vision", "vision"), ("audio", "audio"))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """``models`` or ``route``."""
    with client_from(args) as client:
        return (
            _models(client, args) if args.command == "models" else _route(client, args)
        )


def _models(client: Any, args: argparse.Namespace) -> int:
    health = {(h.provider, h.model): h for h in client.health()}
    rows = []
    for info in client.models():
        price = client.usage.price(info.owned_by, info.id)
        seen = health.get((info.owned_by, info.id))
        caps = ",".join(
            short for name, short in _CAPS if getattr(info.capabilities, name)
        )
        rows.append({
            "id": info.id, "provider": info.owned_by, "role": info.role,
            "enabled": info.enabled, "default": info.is_default, "capabilities": caps,
            "context_window": info.context_window,
            "input_per_1m": None if price is None else price.input,
            "output_per_1m": None if price is None else price.output,
            "health": seen.status if seen is not None else "unseen",
            "breaker": seen.state.value if seen is not None else "closed",
        })  # fmt: skip
    if args.json:
        emit_json(rows)
        return 0
    headers = ["model", "provider", "role", "caps", "context", "$/1M in", "$/1M out",
               "health", "breaker"]  # fmt: skip
    lines = [
        [r["id"] + ("*" if r["default"] else "") + ("" if r["enabled"] else " (off)"),
         r["provider"], r["role"], r["capabilities"], r["context_window"],
         r["input_per_1m"], r["output_per_1m"], r["health"], r["breaker"]]
        for r in rows
    ]  # fmt: skip
    print(table(headers, lines))
    print("* the default model of its role")
    return 0


def _route(client: Any, args: argparse.Namespace) -> int:
    messages = [{"role": "user", "content": args.prompt}]
    decision = client.route(messages, model=args.model, hint=args.hint)
    if args.json:
        emit_json(decision.model_dump(mode="json"))
        return 0
    print(decision.explanation)
    rows = [
        [
            c.model,
            c.provider,
            c.tier,
            c.eligible,
            c.estimated_cost,
            "; ".join(c.reasons),
        ]
        for c in decision.candidates
    ]
    print()
    print(table(["candidate", "provider", "tier", "eligible", "est. $", "why"], rows))
    print(
        f"\nmode {decision.mode}: serves {decision.serves} (chosen {decision.chosen})"
    )
    return 0
