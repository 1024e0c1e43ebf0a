"""Shared helpers: statistics, machine description, tables and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    return percentile(values, 50.0)


def percentile(values: Sequence[float], q: float) -> float:
    """Percentile ``q`` (0-100) with linear interpolation between ranks."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def verdict(value: float, target: float) -> str:
    """PASS when ``value`` is at or under ``target``."""
    return "PASS" if value <= target else "FAIL"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, right-aligned except for the first column."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i])
            for i in range(len(row))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def banner(title: str) -> None:
    """Print a section title."""
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "nproc": usable,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "loadavg_at_start": load,
        "versions": {
            name: _version(name) for name in ("palyra", "httpx", "pydantic", "tiktoken")
        },
    }


def save(sections: dict[str, Any], info: dict[str, Any], argv: list[str]) -> Path:
    """Merge the sections just run into ``bench/results/latest.json``.

    Sections not run this time are kept from the previous file, each with the
    timestamp of the run that produced it.
    """
    previous: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    merged = dict(previous.get("sections") or {})
    for name, data in sections.items():
        merged[name] = {"measured_at": now, **data}
    document = {
        "updated_at": now,
        "argv": argv,
        "machine": info,
        "sections": merged,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return RESULTS


def interleaved(
    calls: dict[str, Any],
    rounds: int,
    per_round: int,
    warmup: int,
    clock: Any = time.perf_counter,
) -> dict[str, dict[str, list[float]]]:
    """Each side's times (us) and per-round medians, the sides interleaved
    call by call in a new random order each pass, timed by ``clock``."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    items = list(calls.items())
    shuffle = random.Random(11).sample
    samples: dict[str, list[float]] = {name: [] for name in calls}
    medians: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        block: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(per_round):
            for name, fn in shuffle(items, len(items)):
                t = clock()
                fn()
                block[name].append((clock() - t) * 1e6)
        for name, values in block.items():
            samples[name] += values
            medians[name].append(median(values))
    return {"calls": samples, "medians": medians}


def cpu_on_path(
    calls: dict[str, Any], rounds: int, per_round: int, warmup: int
) -> dict[str, list[float]]:
    """Per round, the median CPU time of the calling thread for a call on
    each side, interleaved call by call: what the call itself pays: less
    moved by a neighbour's load than wall time is, and not by waiting for
    the interpreter lock."""
    return interleaved(calls, rounds, per_round, warmup, time.thread_time)["medians"]


def cpu_all_in(
    calls: dict[str, Any], clients: dict[str, Any], blocks: int, size: int
) -> dict[str, float]:
    """Per call, the process CPU time (every thread's) of blocks of calls on
    each side, alternating, each block's client flushed before the clock
    stops: what work off the call's path costs the process too."""
    took: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(blocks):
        order = list(calls) if i % 2 == 0 else list(reversed(calls))
        for name in order:
            started = time.process_time()
            for _ in range(size):
                calls[name]()
            clients[name].flush(10)
            took[name].append((time.process_time() - started) / size * 1e6)
    return {name: median(values) for name, values in took.items()}
