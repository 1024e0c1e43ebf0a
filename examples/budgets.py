"""Budgets and usage, offline: a per-agent daily USD budget, alerts, a hard
block, and usage tables by model and by day.

The deterministic provider answers in-process; its two models carry (demo)
prices, so every call has a cost. A `MemoryLedger` keeps the usage records;
an earlier run's records for yesterday are added to it first, to show that
yesterday's spending does not count against today's window, and to give the
by-day table two rows. Nothing is written to disk and no key is needed.

Run it with ``python examples/budgets.py``.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import palyra

ZONE = "America/New_York"  # the budget's days start at midnight here

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        # Demo prices, USD per 1M tokens: high, so that a few calls add up.
        {
            "id": "fast",
            "provider": "local",
            "pricing": {"input": "100", "output": "400"},
        },
        {
            "id": "smart",
            "provider": "local",
            "pricing": {"input": "1000", "output": "4000"},
        },
    ],
    "budgets": [
        {
            "id": "agent-daily",
            "scope": "agent",  # no value: every agent has a limit of its own
            "window": "day",
            "tz": ZONE,
            "soft_limit": "0.10",  # alerts at 50 % and 100 % of it
            "alert_at": ["0.5", "1"],
            "hard_limit": "0.20",  # a call that could pass it is never sent
        }
    ],
}
ASK = [{"role": "user", "content": "Suggest the next step of the research plan"}]


def on_alert(alert: palyra.BudgetAlert) -> None:
    """Called once per budget, agent, day and threshold (palyra logs a
    warning too), during the call whose cost passed the threshold."""
    print(
        f"  ALERT {alert.policy} for {alert.scope_value}: spent ${alert.spent:f},"
        f" {alert.threshold:.0%} of the soft limit ${alert.limit}"
    )


def yesterdays_records(ledger: palyra.MemoryLedger) -> None:
    """What an earlier run left in the ledger: yesterday, at noon in ZONE."""
    today = datetime.now(ZoneInfo(ZONE)).date()
    noon = datetime.combine(today - timedelta(days=1), time(12), ZoneInfo(ZONE))
    for model, tokens_in, tokens_out, cost in (
        ("fast", 1200, 300, Decimal("0.24")),  # 1200 x $100 + 300 x $400, per 1M
        ("smart", 100, 50, Decimal("0.3")),  # 100 x $1000 + 50 x $4000, per 1M
    ):
        ledger.record(
            palyra.UsageRecord(
                started_at=noon,
                finished_at=noon + timedelta(seconds=2),
                agent="researcher",
                provider="local",
                model=model,
                input_uncached=tokens_in,
                output=tokens_out,
                cost_total=cost,
            )
        )


def main() -> None:
    """Spend a day's budget, hit the block, and print the usage tables."""
    ledger = palyra.MemoryLedger()
    yesterdays_records(ledger)
    client = palyra.Palyra(CONFIG, ledger=ledger, on_budget_alert=on_alert)

    print(f"1. Agent 'researcher' spends its daily budget (days in {ZONE})")
    researcher = client.bind(agent="researcher")
    for n in range(1, 20):
        model = "smart" if n % 3 == 0 else "fast"
        print(f"call {n} ({model})")
        try:
            reply = researcher.chat(ASK, model=model, max_tokens=20)
        except palyra.BudgetExceededError as exc:
            print("  BLOCKED before it was sent:")
            print(f"  {exc}")
            print(f"  policy={exc.policy} scope={exc.scope} value={exc.scope_value}")
            print(f"  window={exc.window} reason={exc.reason}")
            print(f"  spent={exc.spent} reserved={exc.reserved:f}")
            print(f"  requested={exc.requested} limit={exc.limit}")
            resets = exc.resets_at.astimezone(ZoneInfo(ZONE)) if exc.resets_at else None
            print(f"  resets_at={resets}")
            break
        cost = reply.palyra.cost.total
        print(f"  {reply.palyra.usage.total} tokens, ${cost}")
    sent = len(client.deterministic().history)
    print(f"requests sent: {sent} (the blocked call sent none)")
    blocked = client.usage.records(status="error")[-1]
    print(f"recorded too: {blocked.error_class}, ${blocked.cost_total}")

    print("\n2. Agent 'writer' has a budget of its own")
    reply = client.chat(ASK, model="smart", max_tokens=20, agent="writer")
    print(f"writer: ${reply.palyra.cost.total}")
    for status in client.budgets.status():
        print(
            f"{status.policy} [{status.scope_value}]: spent ${status.spent},"
            f" remaining ${status.remaining}, {status.state}"
        )

    print("\n3. Usage by model")
    print(f"{'model':8} {'calls':>5} {'input':>6} {'output':>6} {'cost':>14}")
    for row in client.usage.totals(by="model"):
        print(
            f"{row['model']:8} {row.calls:5} {row.input_uncached:6}"
            f" {row.output:6} {row.cost_total:14.10f}"
        )

    print(f"\n4. Usage by day ({ZONE})")
    print(f"{'day':10} {'calls':>5} {'cost':>14}")
    for row in client.usage.totals(by="day", tz=ZONE):
        print(f"{row['day']:10} {row.calls:5} {row.cost_total:14.10f}")


if __name__ == "__main__":
    main()
