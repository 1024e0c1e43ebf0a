"""A usage report, offline: calls by three agents on two priced models, then
totals by model, by agent and by day, the costliest calls, and the records
as CSV, all from the ledger (a SQLite file in a temporary home).

Run it with ``python examples/usage_report.py``.
"""

from __future__ import annotations

import csv
import sys
import tempfile

import palyra

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {
            "id": "fast",
            "provider": "local",
            "pricing": {"input": "0.15", "output": "0.6"},
        },
        {
            "id": "smart",
            "provider": "local",
            "pricing": {"input": "2.5", "output": "10"},
        },
    ],
}


def main() -> None:
    home = tempfile.mkdtemp(prefix="palyra-report-")
    with palyra.Palyra(CONFIG, home=home) as client:
        for agent, model, n in (
            ("support", "fast", 4),
            ("research", "smart", 2),
            ("ops", "fast", 1),
        ):
            for i in range(n):
                ask = [{"role": "user", "content": f"question {i} from {agent}"}]
                client.chat(ask, model=model, agent=agent, tags={"team": agent})
        for by in ("model", "agent"):
            print(f"by {by}:")
            for row in client.usage.totals(by=by):
                print(f"  {row.key[0]:<9} {row.calls} calls  ${row.cost_total}")
        days = client.usage.totals(by="day", tz="Europe/Prague")
        print("days:", len(days), "calls today:", sum(d.calls for d in days))
        records = client.usage.records()
        costliest = max(records, key=lambda r: r.cost_total or 0)
        print("costliest:", costliest.agent, costliest.model, costliest.cost_total)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["agent", "model", "input", "output", "cost"])
        for rec in records[:3]:
            writer.writerow(
                [rec.agent, rec.model, rec.input_uncached, rec.output, rec.cost_total]
            )


if __name__ == "__main__":
    main()
