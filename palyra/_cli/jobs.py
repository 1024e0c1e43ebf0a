"""``palyra jobs``: the scheduler's jobs (``[[jobs]]`` of the configuration),
their next fires, and one run now."""

from __future__ import annotations

import argparse
from typing import Any

from .dispatch import client_from
from .output import CommandError, emit_rows

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``jobs list``, ``jobs run ID`` or ``jobs next ID``."""
    with client_from(args) as client:
        scheduler = client.scheduler
        if args.action == "list":
            return _list(scheduler, args)
        if args.action == "run":
            return _run(scheduler, args.job_id, args.wait)
        if not 1 <= args.n <= 1000:
            raise CommandError("-n takes 1 to 1000", 2)
        for fire in scheduler.next_runs(args.job_id, args.n):
            print(fire.isoformat())
        return 0


def _list(scheduler: Any, args: argparse.Namespace) -> int:
    jobs = scheduler.list()
    rows = [
        [j.id, j.schedule, _when(j.next_run), j.paused, j.concurrency, j.misfire]
        for j in jobs
    ]  # fmt: skip
    headers = ["job", "schedule", "next run", "paused", "concurrency", "misfire"]
    emit_rows(headers, rows, args.json, "(no jobs: add [[jobs]] to the config)")
    return 0


def _run(scheduler: Any, job_id: str, wait: float | None) -> int:
    if wait is None:
        runtime = scheduler.get(job_id).max_runtime
        wait = runtime + 5 if runtime is not None else 300.0
    records = scheduler.trigger(job_id, wait=wait)
    for record in records:
        took = (record.ended_at - record.started_at).total_seconds()
        line = f"{record.job_id}: {record.outcome} in {took:.2f} s"
        if record.error_type:
            line += f" ({record.error_type}: {record.error_message})"
        print(line)
    if not records:
        raise CommandError(f"{job_id}: still running after {wait:g} s")
    return 0 if all(r.outcome == "ok" for r in records) else 1


def _when(moment: Any) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None
