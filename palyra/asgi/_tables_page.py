"""The console's read-only pages: health (breakers, success rates,
latencies, last errors, already redacted by the library) and scheduled jobs
(schedules, next runs, last outcomes). Tables, escaped, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._pages import esc, layout

__all__ = ["health_page", "jobs_page"]


def _table(caption: str, heads: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in heads)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    empty = f'<tr><td colspan="{len(heads)}">Nothing yet</td></tr>'
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body or empty}</tbody></table>"
    )


def _when(value: Any) -> str:
    return "never" if value is None else value.isoformat(timespec="seconds")


def health_page(root: str, models: Sequence[Any]) -> bytes:
    """Each model's breaker and recent health (models that were called)."""
    rows = [
        (
            f"{m.provider}/{m.model}",
            getattr(m, "state", ""),
            m.status,
            "none" if m.success_rate is None else f"{m.success_rate:.0%}",
            "none" if m.latency_p50_ms is None else f"{m.latency_p50_ms:.0f} ms",
            m.calls,
            m.credential_problem or "",
            m.last_error or "",
        )
        for m in models
    ]
    heads = ("Model", "Breaker", "Status", "Success", "Latency p50", "Calls",
             "Credential", "Last error")  # fmt: skip
    body = "<h1>Health</h1>" + _table("Models called since start", heads, rows)
    return layout(root, "Health", body, signed_in=True)


def jobs_page(root: str, jobs: Sequence[tuple[Any, Sequence[Any]]]) -> bytes:
    """Each scheduled job, its next run, and its last outcomes."""
    rows = []
    for job, runs in jobs:
        last = runs[0] if runs else None
        rows.append(
            (
                job.id,
                job.schedule,
                "paused" if job.paused else _when(job.next_run),
                "" if last is None else f"{last.outcome} at {_when(last.ended_at)}",
                " ".join(r.outcome for r in runs),
            )
        )
    heads = ("Job", "Schedule", "Next run", "Last run", "Recent outcomes")
    body = "<h1>Scheduled jobs</h1>" + _table("Jobs", heads, rows)
    return layout(root, "Jobs", body, signed_in=True)
