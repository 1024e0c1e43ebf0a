"""Run palyra's benchmarks: ``python bench/run.py [--quick] [--only NAME]``.

Each benchmark prints its tables and the figures go to
``bench/results/latest.json`` (sections not run keep their previous figures).
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    anthropic_stream,
    auth,
    bookkeeping,
    budgets,
    cli,
    console,
    construction,
    cron,
    events,
    gateway,
    governance,
    imports,
    ledger,
    otel,
    overhead,
    routing,
    sse_decode,
    state,
    streaming,
    tokens,
)
from bench._common import machine, save  # noqa: E402

BENCHMARKS = {
    "import": imports.run,
    "overhead": overhead.run,
    "stream": streaming.run,
    "anthropic": anthropic_stream.run,
    "bookkeeping": bookkeeping.run,
    "construction": construction.run,
    "tokens": tokens.run,
    "sse": sse_decode.run,
    "auth": auth.run,
    "governance": governance.run,
    "ledger": ledger.run,
    "budgets": budgets.run,
    "routing": routing.run,
    "cron": cron.run,
    "cli": cli.run,
    "state": state.run,
    "events": events.run,
    "otel": otel.run,
    "gateway": gateway.run,
    "console": console.run,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="few iterations (smoke test, < 30 s)"
    )
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), help="run a single benchmark"
    )
    args = parser.parse_args(argv)

    info = machine()
    print(
        f"palyra {info['versions']['palyra']}, httpx {info['versions']['httpx']},"
        f" Python {info['python']}, {info['nproc']} CPUs ({info['cpu_model']}),"
        f" load average {', '.join(f'{x:.2f}' for x in info['loadavg_at_start'])}"
        + (" [quick]" if args.quick else "")
    )
    started = time.perf_counter()
    # Clients made by the benchmarks keep their files (the usage ledger) in a
    # directory of their own, never the user's palyra home.
    home = tempfile.mkdtemp(prefix="palyra-bench-home-")
    os.environ["PALYRA_HOME"] = home
    sections = {}
    for name, bench in BENCHMARKS.items():
        if args.only in (None, name):
            sections[name] = {"quick": args.quick, **bench(args.quick)}
    shutil.rmtree(home, ignore_errors=True)
    path = save(sections, info, sys.argv[1:] if argv is None else argv)
    print(f"\n{time.perf_counter() - started:.1f} s; figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
