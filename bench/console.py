"""The console's figures: ``python bench/console.py [--records N]``.

Issue 18's target: the overview page (``/console/``: spend today and this
month, calls, the error rate, the top models) over a ledger of 100k records
renders in at most 100 ms. Measured through the console's ASGI app (signed
in, over `httpx.ASGITransport`), on a `SQLiteLedger` on disk whose records
span the last 60 days; the baseline, in the same run, is the same page over
an empty ledger. The usage page (30 days) and a page of records are timed
beside it. Part of ``bench/run.py`` (``--only console``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

import palyra  # noqa: E402
from bench._common import median, percentile, verdict  # noqa: E402
from palyra._governance import SQLiteLedger, UsageRecord  # noqa: E402
from palyra._governance.sqlite_schema import INSERT, to_row  # noqa: E402
from palyra.asgi import create_app  # noqa: E402

OVERVIEW_TARGET_MS = 100.0
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku", "claude-sonnet", "o3-mini"]


def _record(i: int, count: int, now: datetime, span: float) -> UsageRecord:
    # spread evenly over the ``span`` seconds before now, the newest a second ago
    moment = now - timedelta(seconds=1 + (count - i) * span / count)
    failed = i % 40 == 0
    return UsageRecord(
        started_at=moment,
        finished_at=moment + timedelta(milliseconds=700),
        provider="openai" if i % 2 else "anthropic",
        model=random.choice(MODELS),
        agent=f"agent{i % 9}",
        input_uncached=random.randrange(3000),
        output=random.randrange(800),
        cost_total=Decimal(random.randrange(10**6)) / 10**9,
        status="error" if failed else "ok",
        error_class="RateLimitError" if failed else None,
    )


def fill(path: Path, count: int, span: float) -> None:
    """``count`` records over the last ``span`` seconds, in one transaction
    (set-up, not measured)."""
    now = datetime.now(UTC)
    SQLiteLedger(path).records(until=now - timedelta(days=400))  # creates it
    rows = (to_row(_record(i, count, now, span)) for i in range(count))
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(INSERT, rows)
    conn.close()


def _this_month() -> float:
    """Seconds since this month began (an hour at least): the worst case
    for the overview, every record in the month it sums."""
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max((now - start).total_seconds(), 3600.0)


async def _timed(
    path: Path, pages: dict[str, str], repeats: int
) -> dict[str, list[float]]:
    config = {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [{"id": "bot", "provider": "local"}],
    }
    home = path.parent / f"home-{path.stem}"
    client = palyra.Palyra(config, home=home, ledger=SQLiteLedger(path))
    _, admin = client.tokens.create("bench", scopes=["admin"])
    transport = httpx.ASGITransport(app=create_app(client, console=True))
    times: dict[str, list[float]] = {name: [] for name in pages}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1"
    ) as http:
        await http.post("/console/login", json={"token": admin})
        for url in pages.values():  # warm: connections opened, pages drawn once
            assert (await http.get(url)).status_code == 200, url
        for _ in range(repeats):
            for name, url in pages.items():
                began = time.perf_counter()
                answer = await http.get(url)
                times[name].append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, url
    await client.aclose()
    return times


PAGES = {
    "overview": "/console/",
    "usage (30 days)": "/console/usage?days=30",
    "records (a page of 50)": "/console/v1/records?limit=50&offset=1000",
}


def measure(records: int, repeats: int) -> dict[str, Any]:
    """The pages over ``records`` records spread over the last 60 days, and
    over as many all in this month; the baseline, an empty ledger."""
    random.seed(18)
    workdir = Path(tempfile.mkdtemp(prefix="palyra-bench-console-"))
    spreads = {"60 days": 60 * 86_400.0, "this month": _this_month()}
    try:
        got = {}
        for name, span in spreads.items():
            path = workdir / f"{name.replace(' ', '-')}.sqlite3"
            fill(path, records, span)
            got[name] = asyncio.run(_timed(path, PAGES, repeats))
        fill(workdir / "empty.sqlite3", 0, 1.0)
        empty = asyncio.run(_timed(workdir / "empty.sqlite3", PAGES, repeats))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out: dict[str, Any] = {"records": records}
    for spread, times in got.items():
        out[spread] = {
            page: {
                "median_ms": median(times[page]),
                "p90_ms": percentile(times[page], 90),
                "empty_ledger_median_ms": median(empty[page]),
            }
            for page in PAGES
        }
    return out


def report(found: dict[str, Any]) -> str:
    """Print the table; the overview's verdict (its worst spread)."""
    worst = 0.0
    for spread in ("60 days", "this month"):
        print(
            f"{found['records']:,} records over {spread} (median, p90; empty ledger):"
        )
        for page in PAGES:
            row = found[spread][page]
            ratio = row["median_ms"] / row["empty_ledger_median_ms"]
            print(
                f"  {page:24} {row['median_ms']:7.1f} ms  p90 {row['p90_ms']:7.1f} ms"
                f"  (empty ledger {row['empty_ledger_median_ms']:.1f} ms, x{ratio:.1f})"
            )
        worst = max(worst, found[spread]["overview"]["median_ms"])
    ok = verdict(worst, OVERVIEW_TARGET_MS)
    print(f"overview, the worse spread: {worst:.1f} ms (target <= 100 ms) {ok}")
    return ok


def run(quick: bool) -> dict[str, Any]:
    """For ``bench/run.py``: measure, print, return the JSON section."""
    records, repeats = (20_000, 5) if quick else (100_000, 20)
    print(f"\n== console: the overview page over {records:,} ledger records ==")
    found = measure(records, repeats)
    found["overview_verdict"] = report(found)
    return found


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the figures and whether they meet the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    return 0 if report(measure(args.records, args.repeats)) == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
