"""Edges a review found (issue 14): a job removed and added again under its
id, an async job raising a BaseException, a long cron backlog, jitter past a
cron schedule's gap, keys in error messages, a job stopping its own
scheduler, stop's deadline, an aggregate prune across a zone's offsets, and a
budget whose ledger fails while the alerts are evaluated."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import palyra
from tests.governance.budget_helpers import record

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_job_added_again_under_its_id_has_only_its_own_fires() -> None:
    s = palyra.Scheduler(clock=lambda: T0)
    ran: list[datetime] = []
    s.add(lambda ctx: ran.append(ctx.scheduled_at), id="j", every=60)
    s.remove("j")
    s.add(lambda ctx: ran.append(ctx.scheduled_at), id="j", every=3600)
    assert s.run_pending(at(1)) == []  # the removed job's 12:01 fire is gone
    s.run_pending(at(60))
    assert ran == [at(60)]
    s.remove("j")
    s.add(lambda ctx: ran.append(ctx.scheduled_at), id="j", cron="*/5 * * * *")
    s.run_pending(at(65))
    assert ran == [at(60), at(65)]  # once, not twice


def test_an_async_job_raising_a_base_exception_ends_its_run() -> None:
    class Stop(BaseException):
        pass

    async def job(ctx: palyra.JobContext) -> None:
        raise Stop("out")

    s = palyra.Scheduler(clock=lambda: T0)
    s.add(job, id="j", every=60)
    first = s.run_pending(at(1))
    second = s.run_pending(at(2))  # not held back by a run that never ended
    assert [(r.outcome, r.error_type) for r in first + second] == [
        ("error", "Stop"),
        ("error", "Stop"),
    ]
    assert s.stop(5)


def test_a_long_cron_backlog_is_counted_briefly_and_the_latest_ones_run() -> None:
    s = palyra.Scheduler(clock=lambda: T0)
    ran: list[datetime] = []
    s.add(lambda ctx: ran.append(ctx.scheduled_at), id="j", cron="* * * * *",
          misfire=palyra.catch_up(max=2))  # fmt: skip
    started = time.monotonic()
    records = s.run_pending(T0 + timedelta(days=90), wait=10)
    assert s.wait(5)
    assert time.monotonic() - started < 2  # not 129,600 croniter steps
    assert "+ missed fire(s)" in (records[0].error_message or "")
    end = T0 + timedelta(days=90)
    assert ran == [end - timedelta(minutes=1), end]


def test_jitter_must_be_shorter_than_a_cron_schedule_s_gaps() -> None:
    s = palyra.Scheduler(clock=lambda: T0)
    with pytest.raises(palyra.ScheduleError) as caught:
        s.add(lambda ctx: None, id="j", cron="* * * * *", jitter=150)
    assert caught.value.field == "jitter"
    s.add(lambda ctx: None, id="ok", cron="* * * * *", jitter=30)
    fires = s.next_runs("ok", 20)
    assert fires == sorted(fires)


def test_keys_in_a_job_s_error_are_not_recorded() -> None:
    known = "secret-0123456789-of-this-client"

    def job(ctx: palyra.JobContext) -> None:
        raise RuntimeError(
            f"GET https://x.test/v1/models?key=AIzaSyD3adb33fSECRETSECRET123456 failed;"
            f" x-api-key AKIAEXAMPLESECRET99; with {known}"
        )

    s = palyra.Scheduler(clock=lambda: T0, secrets=lambda: (known,))
    s.add(job, id="j", every=60)
    message = s.run_pending(at(1))[0].error_message or ""
    for secret in ("AIzaSyD3", "AKIAEXAMPLE", known):
        assert secret not in message
    assert "<redacted>" in message


def test_a_job_may_stop_its_own_scheduler() -> None:
    s = palyra.Scheduler(clock=lambda: T0)
    said: list[bool] = []
    s.add(lambda ctx: said.append(s.stop(5)), id="j", every=60)
    started = time.monotonic()
    s.run_pending(at(1), wait=10)
    assert said == [True]
    assert time.monotonic() - started < 2  # it did not wait for itself


def test_stop_keeps_its_deadline() -> None:
    gate = threading.Event()
    s = palyra.Scheduler(clock=lambda: T0)
    s.add(lambda ctx: gate.wait(10), id="j", every=60)
    s.run_pending(at(1), wait=0)
    started = time.monotonic()
    assert s.stop(0.2) is False  # the run is still going, and says so
    assert time.monotonic() - started < 0.5
    gate.set()


def test_an_aggregate_prune_keeps_each_day_in_its_zone(tmp_path: Path) -> None:
    with palyra.Palyra(home=tmp_path) as client:
        ledger = client._ledger.required()
        # 23:30 on 10 January in New York (UTC-5) is 04:30 on the 11th in UTC.
        ledger.record(record(datetime(2026, 1, 11, 4, 30, tzinfo=UTC), agent="jan"))
        ledger.record(record(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), agent="jul"))
        before = client.usage.totals(by="day", tz="America/New_York")
        client.usage.prune(datetime(2026, 3, 1, tzinfo=UTC), mode="aggregate")
        after = client.usage.totals(by="day", tz="America/New_York")
        assert [r.agent for r in client.usage.records()] == ["jul"]
    assert [(t.key, t.calls) for t in after] == [(t.key, t.calls) for t in before]
    assert after[0].key == ("2026-01-10",)


def test_a_failing_ledger_does_not_stop_the_other_budgets_alerts(
    tmp_path: Path,
) -> None:
    alerts: list[palyra.BudgetAlert] = []
    config = {
        "budgets": [
            {"id": "a", "window": "day", "soft_limit": "1", "on_ledger_error": "allow"},
            {"id": "b", "window": "lifetime", "soft_limit": "1", "alert_at": [0.5]},
        ]
    }
    with palyra.Palyra(config, home=tmp_path, on_budget_alert=alerts.append) as client:
        ledger = client._ledger.required()
        ledger.record(record(datetime.now(UTC), cost="0.75"))
        real_totals = ledger.totals

        def day_fails(by: str, since: datetime | None = None, **kw: object) -> object:
            if since is not None:  # the day window's read
                raise palyra.LedgerError("disk gone")
            return real_totals(by, since=since, **kw)  # type: ignore[arg-type]

        ledger.totals = day_fails  # type: ignore[method-assign]
        sent = client.budgets.evaluate()
    assert [(a.policy, a.threshold) for a in sent] == [("b", 0.5)]
    assert alerts == sent


def test_a_job_fired_by_hand_keeps_its_schedule() -> None:
    s = palyra.Scheduler(clock=lambda: T0)
    ran: list[datetime] = []
    s.add(lambda ctx: ran.append(ctx.scheduled_at), id="j", every=3600)
    records = s.trigger("j")
    assert [(r.outcome, r.scheduled_at) for r in records] == [("ok", T0)]
    assert s.get("j").next_run == at(60)  # unchanged
    with pytest.raises(palyra.JobNotFoundError):
        s.trigger("nope")


def test_a_job_fired_by_hand_still_keeps_its_max_runtime() -> None:
    gate = threading.Event()
    s = palyra.Scheduler()  # the real clock: no driver runs, trigger enforces it
    s.add(lambda ctx: gate.wait(10), id="slow", every=3600, max_runtime=0.3)
    started = time.monotonic()
    records = s.trigger("slow", wait=5)
    assert time.monotonic() - started < 2
    assert [r.outcome for r in records] == ["timeout"]
    gate.set()
    assert s.stop(5)
