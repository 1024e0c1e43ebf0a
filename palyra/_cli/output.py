"""What the commands print: plain tables (complete with no extra), JSON and
CSV for machines, a bar chart, one-line errors, and a spinner on stderr for
waits over 300 ms when stderr is a terminal (nothing when piped)."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "CommandError",
    "bars",
    "emit_csv",
    "emit_json",
    "emit_rows",
    "table",
    "waiting",
]


class CommandError(Exception):
    """A failure the command reports in one line; ``status`` is its exit code
    (1: the operation failed, 2: the command was used wrongly)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value else "0"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, columns aligned; numbers to the right."""
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(
            isinstance(r[i], (int, float, Decimal)) and not isinstance(r[i], bool)
            for r in rows
        )
        and bool(rows)
        for i in range(len(headers))
    ]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (Decimals and times as strings)."""
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def emit_rows(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], as_json: bool, empty: str
) -> None:
    """Rows as JSON objects (``as_json``) or a table; ``empty`` when none."""
    if as_json:
        emit_json([dict(zip(headers, row, strict=True)) for row in rows])
    else:
        print(table(headers, rows) if rows else empty)


def emit_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """The rows as CSV on stdout."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])


def bars(rows: Sequence[tuple[str, Decimal | float]], width: int = 40) -> str:
    """A horizontal bar chart, one labelled row per value."""
    if not rows:
        return "(nothing recorded)"
    top = max(float(v) for _, v in rows) or 1.0
    label = max(len(k) for k, _ in rows)
    lines = []
    for key, value in rows:
        filled = round(float(value) / top * width)
        bar = "#" * filled + " " * (width - filled)
        lines.append(f"{key.ljust(label)}  {bar}  {_cell(value)}")
    return "\n".join(lines)


@contextlib.contextmanager
def waiting(label: str) -> Iterator[None]:
    """A spinner on stderr while the block runs, from 300 ms on, only when
    stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()

    def spin() -> None:
        if done.wait(0.3):
            return
        frames = "|/-\\"
        i = 0
        while not done.wait(0.1):
            sys.stderr.write(f"\r{frames[i % 4]} {label}")
            sys.stderr.flush()
            i += 1
        sys.stderr.write("\r" + " " * (len(label) + 2) + "\r")
        sys.stderr.flush()

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        done.set()
        spinner.join(1.0)
