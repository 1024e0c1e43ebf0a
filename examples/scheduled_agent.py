"""A scheduled agent run, offline, with a manual clock: a daily report for
agent ``reports`` at 07:00 in Prague, governed by a budget of its own.

The deterministic provider answers in-process and a `MemoryLedger` keeps the
records, so nothing touches the network or the disk. The scheduler is driven
by hand (`run_pending(now=...)`) through three simulated days: the report
runs each morning as agent ``reports``; a failing job is retried and
recorded without stopping it; on the third morning the agent's budget is
spent and its call is refused, while another agent's call still goes
through. Last, the run records.

Run it with ``python examples/scheduled_agent.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import palyra

PRAGUE = ZoneInfo("Europe/Prague")
CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        # Demo prices, USD per 1M tokens: high, so that a few reports add up.
        {
            "id": "writer",
            "provider": "local",
            "pricing": {"input": "50", "output": "200"},
        },
    ],
    "budgets": [
        {
            "id": "reports-daily-cap",
            "scope": "agent",
            "value": "reports",
            "window": "month",
            "hard_limit": "0.006",  # two reports fit, the third does not
        }
    ],
}
ASK = [{"role": "user", "content": "Write the morning report on yesterday's tickets"}]


def daily_report(ctx: palyra.JobContext) -> None:
    """The job: one call as the job's agent (ctx.client is bound to it)."""
    reply = ctx.client.chat(ASK, model="writer", max_tokens=10)
    info = reply.palyra
    print(
        f"  report for {ctx.scheduled_at.astimezone(PRAGUE):%a %d %b} by {info.agent}"
    )


def flaky(ctx: palyra.JobContext) -> None:
    """A job that fails: recorded, retried once, and the scheduler goes on."""
    raise RuntimeError("the ticket export is not ready")


def main() -> None:
    first = datetime(2026, 6, 1, 6, 0, tzinfo=PRAGUE)
    with palyra.Palyra(CONFIG, ledger=palyra.MemoryLedger()) as client:
        scheduler = client.scheduler
        scheduler.run_pending(first)  # the manual clock: now is 06:00, 1 June
        scheduler.add(
            daily_report, cron="0 7 * * *", tz="Europe/Prague", agent="reports"
        )
        scheduler.add(flaky, cron="30 7 * * *", tz="Europe/Prague", retries=1)
        print(
            "next reports:",
            [
                f"{t.astimezone(PRAGUE):%d %b %H:%M}"
                for t in scheduler.next_runs("daily_report", 3)
            ],
        )
        for day in range(3):
            morning = first + timedelta(days=day)
            print(f"day {day + 1}:")
            for minute in range(0, 150, 30):  # 06:00 to 08:00, every half hour
                for record in scheduler.run_pending(
                    morning + timedelta(minutes=minute)
                ):
                    if record.outcome != "ok":
                        what = f"{record.error_type}, attempt {record.attempt}"
                        print(f"  {record.job_id}: {record.outcome} ({what})")
        other = client.chat(ASK, model="writer", max_tokens=5, agent="support")
        print("another agent is not held back:", other.palyra.agent)
        spent = client.usage.totals(by="agent")
        print("spent:", {t.key[0]: str(t.cost_total) for t in spent})
        outcomes = [r.outcome for r in scheduler.runs("daily_report")]
        print("daily_report runs, newest first:", outcomes)
        scheduler.stop(5)


if __name__ == "__main__":
    main()
