"""Issue 11's governance path: what pricing, budgets and the ledger add to a call.

Sides, all on the offline deterministic provider (no sockets: the difference
between the sides is governance alone), interleaved call by call in a new
random order each pass:

- ``off``: governance's hooks taken out of the pipeline (no usage, cost,
  budget or record): the baseline;
- ``priced``: usage and cost on the reply, no ledger, no budget;
- ``full``: usage and cost, a global USD budget and a per-agent token budget
  (reserve before dispatch, settle after), and one record per call to a
  `SQLiteLedger` on disk (WAL, ``synchronous=NORMAL``, in a temp directory).

The target: ``full`` adds at most 150 us per call at the median.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import palyra
from bench._common import banner, interleaved, median, percentile, table, verdict

TARGET_US = 150.0
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three primary colours."},
]


def _config(budgets: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {
                "id": "bot",
                "provider": "local",
                "max_output_tokens": 256,
                "pricing": {"input": "0.15", "cached_input": "0.075", "output": "0.6"},
            }
        ],
    }
    if budgets:
        config["budgets"] = [
            {"id": "all", "metric": "usd", "hard_limit": "1000000", "window": "day"},
            {
                "id": "per-agent",
                "metric": "tokens",
                "scope": "agent",
                "hard_limit": "1000000000000",
                "soft_limit": "999999999999",
            },
        ]
    return config


def _sides(root: Path) -> dict[str, palyra.Palyra]:
    off = palyra.Palyra(_config(False), ledger=False)
    hooks = off._pipeline.hooks
    for seam in (hooks.before_dispatch, hooks.after_completion, hooks.after_failure):
        seam[:] = [
            h for h in seam if "Governance" not in getattr(h, "__qualname__", "")
        ]
    priced = palyra.Palyra(_config(False), ledger=False)
    full = palyra.Palyra(
        _config(True), ledger=palyra.SQLiteLedger(root / "usage.sqlite3")
    )
    return {"off": off, "priced": priced, "full": full}


_interleaved = interleaved  # the other benchmarks' name for it


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the table, return the JSON section."""
    rounds, per_round, warmup = (6, 100, 200) if quick else (30, 300, 500)
    banner(
        "governance: a chat call with governance off / priced / full (budgets +"
        f" SQLite ledger on disk), deterministic provider, {rounds} rounds x"
        f" {per_round} calls per side, interleaved call by call"
    )
    root = Path(tempfile.mkdtemp(prefix="palyra-bench-governance-"))
    clients = _sides(root)
    try:
        calls = {
            name: (lambda c=client: c.chat(MESSAGES, agent="bench"))
            for name, client in clients.items()
        }
        timed = _interleaved(calls, rounds, per_round, warmup)
        written = len(clients["full"].usage.records(agent="bench"))
        status = clients["full"].budgets.status()
    finally:
        for client in clients.values():
            client.close()
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    base = timed["medians"]["off"]
    for name in clients:
        diffs = [s - b for s, b in zip(timed["medians"][name], base, strict=True)]
        rows.append(
            {
                "side": name,
                "median_us": median(timed["calls"][name]),
                "p90_us": percentile(timed["calls"][name], 90),
                "added_us_median": median(diffs),
                "added_us_p10": percentile(diffs, 10),
                "added_us_p90": percentile(diffs, 90),
            }
        )
    print(
        table(
            ["side", "us/call", "p90", "added", "p10", "p90"],
            [
                [
                    r["side"],
                    r["median_us"],
                    r["p90_us"],
                    "" if r["side"] == "off" else r["added_us_median"],
                    "" if r["side"] == "off" else r["added_us_p10"],
                    "" if r["side"] == "off" else r["added_us_p90"],
                ]
                for r in rows
            ],
        )
    )
    full = next(r for r in rows if r["side"] == "full")
    print(
        "added: median over rounds of (the side's median call - off's median call"
        f" in the same round), us; {written} records written by 'full',"
        f" {len(status)} budget scopes held"
    )
    print(
        f"target: governance adds <= {TARGET_US:.0f} us per call:"
        f" {full['added_us_median']:.1f} us"
        f" {verdict(full['added_us_median'], TARGET_US)}"
    )
    return {
        "rows": rows,
        "records_written": written,
        "target_us": TARGET_US,
        "verdict": verdict(full["added_us_median"], TARGET_US),
    }
