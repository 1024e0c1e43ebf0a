"""The built-in maintenance jobs against real parts (issue 14): a health
probe closes a half-open breaker of the loopback upstream, a refresh rotates
an OAuth token before it expires (a real authorization server), a budget
alert fires at the window boundary with no call made, retention prunes the
ledger; and a scheduled agent run is governed as that agent."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import ManualClock, upstream_config
from tests.upstream import Upstream, error_reply

HI = [{"role": "user", "content": "hi"}]
# Jobs of a client's scheduler are scheduled from the real clock when it is
# made; the tests then drive it by hand from a moment past their first fire.
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's moment: two minutes from when it starts."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=2)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)


def probing(upstream: Upstream, **job: Any) -> dict[str, Any]:
    config = upstream_config(upstream.base_url)
    config["providers"][0].update(
        circuit_breaker_threshold=2, circuit_breaker_cooldown=30
    )
    config["jobs"] = [{"kind": "health_probe", "every": 60, **job}]
    return config


def ran(records: list[palyra.RunRecord]) -> list[str]:
    """The outcomes of the runs, the summary of fires missed before aside."""
    return [r.outcome for r in records if r.error_type != "Misfire"]


def state(client: palyra.Palyra, model: str = "gpt-4o-mini") -> str:
    found = [h for h in client.health() if h.model == model]
    return found[0].state.value if found else "unseen"


def test_a_probe_closes_a_half_open_breaker(upstream: Upstream, tmp_path: Path) -> None:
    clock = ManualClock()
    config = probing(upstream, probe="chat", per="model", models=["gpt-4o-mini"])
    with palyra.Palyra(config, clock=clock, home=tmp_path) as client:
        upstream.enqueue(error_reply(500, "down"), error_reply(500, "down"))
        for _ in range(2):
            with pytest.raises(palyra.InternalServerError):
                client.chat(HI, model="gpt-4o-mini")
        assert state(client) == "open"
        sent = len(upstream.requests)
        records = client.scheduler.run_pending(NOW)  # still open: held back
        assert ran(records) == ["ok"]
        assert len(upstream.requests) == sent  # no request while open
        clock.advance(31)  # the cooldown passed: half-open
        assert state(client) == "half_open"
        client.scheduler.run_pending(NOW + timedelta(minutes=1))
        assert state(client) == "closed"  # closed with no user call
        probe = upstream.requests[-1]
        assert probe.json()["max_tokens"] == 1
        last = client.usage.records()[-1]
        assert (last.principal, last.model, last.status) == (
            "system:health",
            "gpt-4o-mini",
            "ok",
        )


def test_a_failing_probe_is_an_error_naming_the_target(
    upstream: Upstream, tmp_path: Path
) -> None:
    config = probing(upstream, probe="models")
    with palyra.Palyra(config, home=tmp_path) as client:
        upstream.enqueue(error_reply(503, "maintenance"))
        records = client.scheduler.run_pending(NOW)
        assert ran(records) == ["error"]
        failed = [r for r in records if r.outcome == "error"]
        assert failed[0].error_type == "MaintenanceError"
        assert "up/" in (failed[0].error_message or "")
        assert upstream.requests[-1].path.endswith("/models")


def test_a_probe_a_budget_would_block_is_skipped(
    upstream: Upstream, tmp_path: Path
) -> None:
    config = probing(upstream, probe="chat")
    config["budgets"] = [
        {
            "id": "probes",
            "scope": "principal",
            "value": "system:health",
            "window": "day",
            "hard_limit": "0.0000001",
        }
    ]
    with palyra.Palyra(config, home=tmp_path) as client:
        records = client.scheduler.run_pending(NOW)
        assert ran(records) == ["ok"]
        assert upstream.requests == []  # refused before any request
        client.chat(HI)  # other principals are not held back
        assert len(upstream.requests) == 1


def test_a_refresh_rotates_a_token_before_it_expires(tmp_path: Path) -> None:
    from tests.auth.authserver import AuthServer
    from tests.auth.test_oauth_client import oauth_config, sign_in

    with AuthServer(access_ttl=120) as auth, Upstream(api_key=auth.valid) as provider:
        config = oauth_config(auth, provider)
        config["auth"] = {"refresh_window": 300}  # 120 s left: within it
        config["jobs"] = [{"kind": "credential_refresh", "every": 60}]
        vault = palyra.MemorySecretStore()
        with palyra.Palyra(config, secrets=vault, home=tmp_path) as client:
            before = sign_in(client, auth)
            auth.access_ttl = 3600
            records = client.scheduler.run_pending(NOW)
            assert ran(records) == ["ok"]
            assert auth.token_requests["refresh_token"] == 1
            after = client.auth.get(before.id)
            assert after.expires_at is not None
            assert before.expires_at is not None
            assert after.expires_at > before.expires_at  # rotated, not yet expired
            client.scheduler.run_pending(NOW + timedelta(minutes=1))
            assert auth.token_requests["refresh_token"] == 1  # not due again
            client.chat(HI, model="m")  # no refresh on the call's path: done already
            assert auth.token_requests["refresh_token"] == 1
        assert not auth.errors, auth.errors


def test_a_failed_refresh_marks_its_profile_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    from tests.auth.authserver import AuthServer
    from tests.auth.test_oauth_client import oauth_config, sign_in

    with AuthServer(access_ttl=120) as auth, Upstream(api_key=auth.valid) as provider:
        config = oauth_config(auth, provider)
        config["jobs"] = [{"kind": "credential_refresh", "every": 60}]
        vault = palyra.MemorySecretStore()
        with palyra.Palyra(config, secrets=vault, home=tmp_path) as client:
            first = sign_in(client, auth, name="first")
            second = sign_in(client, auth, name="second")
            auth.fail_next("500")  # the first refresh asked for fails
            records = client.scheduler.run_pending(NOW)
            failed = [r for r in records if r.outcome == "error"]
            assert len(failed) == 1
            assert failed[0].error_type == "MaintenanceError"
            assert auth.token_requests["refresh_token"] == 2  # both were tried
            states = {p.id: p for p in client.auth.list()}
            marked = [p for p in states.values() if p.refresh_failures]
            assert len(marked) == 1
            assert marked[0].id in (failed[0].error_message or "")
            assert {first.id, second.id} == set(states)
        assert not auth.errors, auth.errors


def test_a_budget_alert_fires_at_the_window_boundary_with_no_call(
    tmp_path: Path,
) -> None:
    alerts: list[palyra.BudgetAlert] = []
    config = {
        "budgets": [
            {"id": "daily", "window": "day", "hard_limit": "1", "alert_at": [0.5]}
        ],
        "jobs": [{"kind": "budget_alerts", "cron": "* * * * *"}],
    }
    ledger = palyra.SQLiteLedger(tmp_path / "usage.sqlite3")
    with palyra.Palyra(config, home=tmp_path, on_budget_alert=alerts.append) as client:
        day = (NOW + timedelta(days=1)).replace(hour=0, minute=0, second=0)
        moment = [day - timedelta(seconds=90)]
        client.budgets._engine._now = lambda: moment[0]  # the budgets' clock
        client.scheduler.run_pending(moment[0])
        assert alerts == []
        # Another process spends 0.60 just after midnight, in the next window.
        ledger.record(_spent(day + timedelta(seconds=10), "0.60"))
        moment[0] = day - timedelta(seconds=30)
        client.scheduler.run_pending(moment[0])
        assert alerts == []  # not in this window
        moment[0] = day + timedelta(seconds=30)
        client.scheduler.run_pending(moment[0])  # the window rolled over
        assert [(a.policy, a.threshold, a.spent) for a in alerts] == [
            ("daily", Decimal("0.5"), Decimal("0.60"))
        ]
        assert alerts[0].window_start == day
        moment[0] += timedelta(minutes=1)
        client.scheduler.run_pending(moment[0])
        assert len(alerts) == 1  # once per window
    ledger.close()


def _spent(at: datetime, usd: str) -> palyra.UsageRecord:
    from tests.governance.budget_helpers import record

    return record(at, cost=usd)


def test_retention_prunes_old_records_and_aggregate_keeps_day_totals(
    tmp_path: Path,
) -> None:
    from tests.governance.budget_helpers import record

    for mode, kept_calls in (("delete", 1), ("aggregate", 3)):
        home = tmp_path / mode
        config = {
            "jobs": [{"kind": "ledger_retention", "max_age_days": 30, "mode": mode}]
        }
        with palyra.Palyra(config, home=home) as client:
            ledger = client._ledger.required()
            for days in (60, 40, 1):
                ledger.record(record(NOW - timedelta(days=days), agent=f"d{days}"))
            records = client.scheduler.run_pending(NOW + timedelta(days=1))
            assert ran(records) == ["ok"]
            assert [r.agent for r in client.usage.records()] == ["d1"]
            totals = client.usage.totals(by="day")
            assert sum(t.calls for t in totals) == kept_calls


def test_a_scheduled_agent_run_is_blocked_by_its_own_budget(tmp_path: Path) -> None:
    config = {
        "budgets": [
            {
                "id": "reports-cap",
                "scope": "agent",
                "value": "reports",
                "window": "day",
                "hard_limit": "0.0000000001",
            }
        ],
        "models": [
            {
                "id": "priced",
                "provider": "deterministic",
                "pricing": {"input": "1", "output": "1"},
            }
        ],
        "providers": [{"id": "deterministic", "kind": "deterministic"}],
    }
    seen: list[str | None] = []

    def daily_report(ctx: palyra.JobContext) -> None:
        seen.append(ctx.client.bind().chat(HI, model="priced").palyra.agent)

    with palyra.Palyra(config, home=tmp_path) as client:
        client.scheduler.add(daily_report, cron="0 6 * * *", agent="reports")
        records = client.scheduler.run_pending(NOW + timedelta(days=1))
        assert [
            (r.outcome, r.error_type) for r in records if r.error_type != "Misfire"
        ] == [("error", "BudgetExceededError")]
        assert seen == []
        other = client.chat(HI, model="priced", agent="support")  # not blocked
        assert other.palyra.agent == "support"
        refused = client.usage.records(agent="reports")
        assert [(r.principal, r.error_class) for r in refused] == [
            ("system:scheduler", "BudgetExceededError")
        ]


def test_a_bad_jobs_entry_is_named_by_its_path(tmp_path: Path) -> None:
    config = {
        "jobs": [
            {"kind": "budget_alerts"},
            {"kind": "health_probe", "cron": "99 * * * *"},
        ]
    }
    with palyra.Palyra(config, home=tmp_path) as client:
        with pytest.raises(palyra.ScheduleError) as caught:
            client.scheduler  # noqa: B018 - made on first use
        assert caught.value.field == "jobs[1].cron"


def test_run_records_live_in_the_ledger_file_with_no_secret(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdefghijklmnop"

    def leaky(ctx: palyra.JobContext) -> None:
        raise RuntimeError(f"upstream said: bad key {secret}")

    with palyra.Palyra(home=tmp_path) as client:
        client.scheduler.add(leaky, every=60, id="leaky")
        client.scheduler.run_pending(NOW + timedelta(days=1))
        found = client.scheduler.runs("leaky")
        path = client.usage.health().path
    assert path is not None
    assert [r.outcome for r in found] == ["skipped", "error"] or [
        r.outcome for r in found
    ] == ["error", "skipped"]
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT job_id, outcome, error_message FROM cron_runs"
    ).fetchall()
    conn.close()
    assert {row[1] for row in rows} == {"skipped", "error"}
    for name in Path(path).parent.iterdir():
        assert secret.encode() not in name.read_bytes()
