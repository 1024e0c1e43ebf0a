"""Child processes for the ledger tests: ``python -m tests.governance.ledger_child
<mode> <path> <count> [<go-file>]``.

``<path>`` is a SQLite file, or a ``postgresql://`` DSN for a `PostgresLedger`.

``burst`` writes records and prints each id once ``record`` has returned
(flushed: the parent kills this process mid-burst); ``write`` waits for the
go-file, so that several children write at once, then writes ``count``.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal

from palyra._governance import PostgresLedger, SQLiteLedger, UsageLedger, UsageRecord


def main() -> None:
    mode, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ledger: UsageLedger = (
        PostgresLedger(path) if path.startswith("postgresql://") else SQLiteLedger(path)
    )
    if mode == "write":
        while not os.path.exists(sys.argv[4]):
            time.sleep(0.001)
    now = datetime.now(UTC)
    for i in range(count):
        rec = UsageRecord(
            started_at=now,
            finished_at=now,
            provider="p",
            model="m",
            agent=f"pid{os.getpid()}",
            output=i,
            cost_total=Decimal("0.000001"),
        )
        ledger.record(rec)
        if mode == "burst":
            print(rec.id, flush=True)
    ledger.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
