"""The PostgreSQL ledger beyond the shared contract (test_ledger.py runs that
against it too): laziness, migrations, processes writing at once, a server
that is down or drops connections, a client configured with ``[ledger] url``,
prune and the scheduler's run records, and the password that is never shown.

Every test talks to the real PostgreSQL the session starts (a fresh database
each, `postgres_dsn`); none mocks the server.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import palyra
from palyra._governance import LedgerError, PostgresLedger
from palyra._governance.postgres_schema import MIGRATIONS, SCHEMA_VERSION
from tests.governance.test_ledger import CHILD, T0, rec
from tests.servers import free_port

USER = [{"role": "user", "content": "hello"}]
SECRET = "pw-SECRET-123"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(postgres_dsn: str) -> Iterator[PostgresLedger]:
    made = PostgresLedger(postgres_dsn)
    yield made
    made.close()


def sql(dsn: str, statement: str, *params: Any) -> list[Any]:
    """Run one statement on ``dsn`` (as the test, not the ledger)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params)  # type: ignore[call-overload]
        return cursor.fetchall() if cursor.description else []


def ledger_backends(dsn: str) -> int:
    """The connections the ledger holds to the test's database."""
    [(count,)] = sql(
        dsn,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = 'palyra'",
        dsn.rsplit("/", 1)[1],
    )
    return int(count)


def client_config(url: str, **ledger: Any) -> dict[str, Any]:
    """A deterministic, priced model whose records go to ``url``."""
    return {
        "providers": [{"id": "local", "kind": "deterministic"}],
        "models": [
            {
                "id": "small",
                "provider": "local",
                "pricing": {"input": "0.15", "output": "0.60"},
            }
        ],
        "ledger": {"url": url, **ledger},
    }


# Laziness


def test_nothing_connects_until_first_use(postgres_dsn: str) -> None:
    ledger = PostgresLedger(postgres_dsn)
    repr(ledger)
    assert ledger.health().ok
    assert ledger_backends(postgres_dsn) == 0
    ledger.record(rec())
    assert ledger_backends(postgres_dsn) == 1
    assert sql(postgres_dsn, "SELECT version FROM palyra_schema") == [(SCHEMA_VERSION,)]
    ledger.close()
    assert ledger_backends(postgres_dsn) == 0
    assert len(ledger.records()) == 1  # it connects again
    ledger.close()


def test_import_and_client_load_no_psycopg_and_open_no_socket(
    postgres_dsn: str,
) -> None:
    code = f"""
import sys
events = []
sys.addaudithook(lambda e, a: events.append(e) if e.startswith("socket.") else None)
import palyra
config = {json.dumps(client_config(postgres_dsn))}
client = palyra.Palyra(config)
print("psycopg" in sys.modules, client.usage.health().path, events)
client.chat([{{"role": "user", "content": "hi"}}], model="small")
print("psycopg" in sys.modules, len(client.usage.records()))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[:2] == [
        f"False {postgres_dsn} []",
        "True 1",
    ]


# Migrations


def _old_database(dsn: str, version: int) -> None:
    """The tables as palyra left them at ``version``, one record in them."""
    for step in range(1, version + 1):
        for statement in MIGRATIONS[step]:
            sql(dsn, statement)
    if version:
        sql(dsn, "CREATE TABLE palyra_schema (version INTEGER)")
        sql(dsn, "INSERT INTO palyra_schema VALUES (%s)", version)
        sql(
            dsn,
            "INSERT INTO palyra_usage (id, started_at, started_ms, finished_at,"
            " finished_ms, tags, provider, model, input_uncached, cache_read,"
            " cache_write, output, reasoning, cost_total, cost_exp, unpriced,"
            " estimated, currency, latency_ms, status, attempts) VALUES ('old',"
            " %s, %s, %s, %s, '{}', 'p', 'm', 1, 0, 0, 2, 0, 0.5, -1, false,"
            " false, 'USD', 3.0, 'ok', 1)",
            *(T0, int(T0.timestamp() * 1000)) * 2,
        )


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_every_older_schema_is_migrated(postgres_dsn: str, version: int) -> None:
    _old_database(postgres_dsn, version)
    ledger = PostgresLedger(postgres_dsn)
    found = [(r.id, r.output, r.cost_total) for r in ledger.records()]
    assert found == ([("old", 2, Decimal("0.5"))] if version else [])
    ledger.record(rec(routing="r"))
    ledger.record_run_row(("run", "job", 1, 2, 3, "ok", 1, None, None), 10)
    assert len(ledger.run_rows("job", 10)) == 1
    ledger.close()
    assert sql(postgres_dsn, "SELECT version FROM palyra_schema") == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    _old_database(postgres_dsn, SCHEMA_VERSION)
    sql(postgres_dsn, "UPDATE palyra_schema SET version = %s", SCHEMA_VERSION + 1)
    ledger = PostgresLedger(postgres_dsn)
    with pytest.raises(LedgerError, match="newer than this palyra") as caught:
        ledger.records()
    assert postgres_dsn in str(caught.value)
    with pytest.raises(LedgerError, match="upgrade palyra"):
        ledger.record(rec())
    assert not ledger.health().ok
    ledger.close()


# Processes and threads


def test_four_processes_writing_at_once_add_up_exactly(postgres_dsn: str) -> None:
    """Four processes open an empty database at once (so they migrate it at
    once, too) and write 250 records each."""
    go = Path(os.environ["PALYRA_HOME"]) / "go"
    children = [
        subprocess.Popen(
            [*CHILD, "write", postgres_dsn, "250", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert (child.returncode, out.strip(), err) == (0, "done", "")
    ledger = PostgresLedger(postgres_dsn)
    by_agent = ledger.totals("agent")
    [everything] = ledger.totals("currency")
    ledger.close()
    assert [t.calls for t in by_agent] == [250] * 4
    assert all(t.output == sum(range(250)) for t in by_agent)
    assert all(t.cost_total == Decimal("0.000250") for t in by_agent)
    assert (everything.calls, str(everything.cost_total)) == (1000, "0.001000")


def test_threads_past_the_pool_wait_for_a_connection(postgres_dsn: str) -> None:
    ledger = PostgresLedger(postgres_dsn, pool_size=2)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            ledger.record_many([rec(agent=f"t{n}") for _ in range(50)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert ledger_backends(postgres_dsn) <= 2
    assert [t.calls for t in ledger.totals("agent")] == [50] * 12
    ledger.close()


# A server that is down, or drops the ledger's connections


def test_a_down_server_is_a_typed_error_naming_host_and_port() -> None:
    port = free_port()  # nothing listens there
    ledger = PostgresLedger(f"postgresql://u:{SECRET}@127.0.0.1:{port}/db", timeout=2)
    for attempt in (lambda: ledger.record(rec()), ledger.records):
        with pytest.raises(LedgerError) as caught:
            attempt()
        text = str(caught.value)
        assert f"127.0.0.1:{port}" in text
        assert "could not" in text
        assert SECRET not in text
        # psycopg's error is not chained (its connection knows the DSN).
        assert (caught.value.__cause__, caught.value.__context__) == (None, None)
    health = ledger.health()
    assert (health.ok, health.failed_writes, health.written) == (False, 1, 0)
    assert health.last_error is not None
    assert SECRET not in health.last_error
    ledger.close()


def test_a_client_is_answered_while_its_ledger_server_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/db"
    with (
        caplog.at_level(logging.DEBUG),
        palyra.Palyra(client_config(url, timeout=2)) as client,
    ):
        replies = [client.chat(USER, model="small") for _ in range(2)]
        health = client.usage.health()
    assert all(r.choices[0].message.content for r in replies)
    assert (health.ok, health.failed_writes) == (False, 2)
    errors = [r for r in caplog.records if "usage record not kept" in r.message]
    assert len(errors) == 1
    assert "127.0.0.1" in errors[0].getMessage()
    assert SECRET not in caplog.text


def test_connections_dropped_by_the_server_are_made_again(postgres_dsn: str) -> None:
    ledger = PostgresLedger(postgres_dsn)
    ledger.record(rec())
    assert ledger.records()
    for _ in range(2):  # twice: the first new connection is dropped as well
        [(dropped,)] = sql(
            postgres_dsn,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'palyra'",
            postgres_dsn.rsplit("/", 1)[1],
        )
        assert dropped >= 1
        ledger.record(rec())  # no error: the broken connection is replaced
    assert len(ledger.records()) == 3
    health = ledger.health()
    assert (health.ok, health.failed_writes, health.written) == (True, 0, 3)
    ledger.close()


def test_a_statement_past_the_timeout_is_cancelled(postgres_dsn: str) -> None:
    ledger = PostgresLedger(postgres_dsn, timeout=0.5)
    ledger.record(rec())
    # Another session holds the table's lock: the write waits, then gives up.
    with psycopg.connect(postgres_dsn) as blocker:
        blocker.execute("LOCK TABLE palyra_usage IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(LedgerError, match="statement timeout"):
            ledger.record(rec())
    ledger.record(rec())  # the connection is fine afterwards
    assert len(ledger.records()) == 2
    ledger.close()


# A client configured with [ledger] url


def test_a_client_with_a_ledger_url_records_its_calls(postgres_dsn: str) -> None:
    with palyra.Palyra(client_config(postgres_dsn)) as client:
        assert client.usage.health().path == postgres_dsn
        client.chat(USER, model="small")
        [record] = client.usage.records()
        assert (record.model, record.status) == ("small", "ok")
        assert record.cost_total is not None
        assert record.cost_total > 0
        [total] = client.usage.totals(by="model")
        assert total.cost_total == record.cost_total
        assert client.usage.health().written == 1
    # Another client, another process's view: the same shared records.
    with palyra.Palyra(client_config(postgres_dsn)) as other:
        assert [r.id for r in other.usage.records()] == [record.id]


@pytest.mark.anyio
async def test_async_calls_write_to_postgres_too(postgres_dsn: str) -> None:
    async with palyra.Palyra(client_config(postgres_dsn)) as client:
        for _ in range(3):
            await client.achat(USER, model="small")
        assert len(await client.usage.arecords()) == 3


def test_the_ledger_url_is_checked() -> None:
    for bad in ("mysql://h/db", "postgresql:/h", "", "h:5432"):
        with pytest.raises(palyra.ConfigError, match=r"ledger\.url: must be a"):
            palyra.Palyra({"ledger": {"url": bad}})
    with pytest.raises(palyra.ConfigError, match="mutually exclusive"):
        palyra.Palyra({"ledger": {"url": "postgres://h/db", "path": "u.sqlite3"}})
    assert palyra.Palyra({"ledger": {"url": "postgres://h/db"}}).usage.health().ok


def test_without_psycopg_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(LedgerError, match=r"pip install 'palyra\[postgres\]'"):
        PostgresLedger("postgresql://h/db")
    client = palyra.Palyra(client_config("postgresql://127.0.0.1/db"))
    with caplog.at_level(logging.ERROR, logger="palyra"):
        assert client.chat(USER, model="small").choices[0].message.content
    assert "palyra[postgres]" in caplog.text
    with pytest.raises(LedgerError, match="palyra"):
        client.usage.records()
    client.close()


# Prune and the scheduler's run records


def test_prune_deletes_or_keeps_the_day_totals(postgres_dsn: str) -> None:
    ledger = PostgresLedger(postgres_dsn)
    days = (60, 40, 1)
    for n in days:
        at = T0 - timedelta(days=n)
        ledger.record(rec(started_at=at, finished_at=at, agent=f"d{n}", output=n))
    ledger.record(rec(unpriced=True))
    ledger.record(rec(cost_total=Decimal("0.10")))
    before = ledger.totals("day", tz="America/New_York")
    cutoff = T0 - timedelta(days=30, minutes=7)  # rounded down to 15 minutes
    ledger.record_run_row(("old", "j", 1, 2, 3, "ok", 1, None, None), 10)
    assert ledger.prune(cutoff, keep_totals=True) == 2
    assert ledger.run_rows(None, 10) == []  # it ended before the cutoff
    assert [r.agent for r in ledger.records()][:1] == ["d1"]
    assert ledger.totals("day", tz="America/New_York") == before
    assert sum(t.calls for t in ledger.totals("agent")) == 3  # only records
    # Pruned again past the same slots, the kept sums add up.
    ledger.record(rec(started_at=T0 - timedelta(days=50), agent="late"))
    assert ledger.prune(cutoff, keep_totals=True) == 1
    assert sum(t.calls for t in ledger.totals("day")) == 6
    assert ledger.prune(T0 + timedelta(days=1)) == 3  # and now forget them all
    assert ledger.totals("day") == []
    ledger.close()


def test_prune_through_the_client_and_its_retention_job(postgres_dsn: str) -> None:
    config = client_config(postgres_dsn)
    config["jobs"] = [{"kind": "ledger_retention", "max_age_days": 30}]
    now = datetime.now(UTC)
    with palyra.Palyra(config) as client:
        ledger = client._ledger.required()
        for days in (60, 40, 1):
            ledger.record(rec(started_at=now - timedelta(days=days)))
        runs = client.scheduler.run_pending(now + timedelta(days=1))
        assert [r.outcome for r in runs if r.error_type != "Misfire"] == ["ok"]
        assert len(client.usage.records()) == 1
        kept = {r.run_id for r in client.scheduler.runs()}
    [(count,)] = sql(postgres_dsn, "SELECT count(*) FROM palyra_cron_runs")
    assert count == len(kept) >= 1
    # The run history is in PostgreSQL, for every client of the database.
    with palyra.Palyra(config) as other:
        assert {r.run_id for r in other.scheduler.runs()} == kept
        assert other.usage.prune(now + timedelta(days=2), mode="aggregate") == 1
        assert sum(t.calls for t in other.usage.totals(by="day")) == 1
        assert other.usage.records() == []


def test_run_rows_are_bounded_per_job_and_newest_first(ledger: PostgresLedger) -> None:
    for n in range(5):
        for job in ("a", "b"):
            ledger.record_run_row((f"{job}{n}", job, n, n, n, "ok", 1, None, None), 3)
    ledger.record_run_row(("a4", "a", 4, 4, 9, "error", 2, "E", "boom"), 3)
    assert [r[0] for r in ledger.run_rows("a", 10)] == ["a4", "a3", "a2"]
    assert ledger.run_rows("a", 1) == [("a4", "a", 4, 4, 9, "error", 2, "E", "boom")]
    assert [r[0] for r in ledger.run_rows(None, 4)] == ["a4", "b4", "a3", "b3"]


# The password


def test_the_password_is_never_shown(
    postgres_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The test cluster trusts every login, so the password is not checked;
    what matters is that it appears nowhere palyra shows or logs."""
    database = postgres_dsn.rsplit("/", 1)[1]
    role = f"u_{database}"
    sql(postgres_dsn, f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
    sql(postgres_dsn, f"ALTER DATABASE {database} OWNER TO {role}")
    host = postgres_dsn.split("@", 1)[1]
    url = f"postgresql://{role}:{SECRET}@{host}"
    shown: list[object] = []
    with caplog.at_level(logging.DEBUG):
        ledger = PostgresLedger(url)
        ledger.record(rec())
        assert len(ledger.records()) == 1
        assert sql(postgres_dsn, "SELECT tableowner FROM pg_tables WHERE"
                   " tablename = 'palyra_usage'") == [(role,)]  # fmt: skip
        shown += [repr(ledger), str(ledger), ledger.health(), ledger.url]
        sql(postgres_dsn, "UPDATE palyra_schema SET version = 99")
        ledger.close()
        with pytest.raises(LedgerError) as caught:
            ledger.records()
        shown += [caught.value, repr(caught.value), ledger.health()]
        ledger.close()
        bad_port = url.replace(host.split("/")[0], f"127.0.0.1:{free_port()}")
        with palyra.Palyra(client_config(bad_port, timeout=2)) as client:
            client.chat(USER, model="small")
            config = client.config
            shown += [client.usage.health(), repr(config), str(config)]
            shown += [config.model_dump(), config.model_dump_json(), config.ledger]
    assert url.replace(SECRET, "***") in str(shown[0])
    # A client key's passphrase in the query is hidden the same way.
    keyed = PostgresLedger(f"{url}?sslpassword={SECRET}&application_name=x")
    shown += [repr(keyed), str(keyed), keyed.url, keyed.health()]
    toml = tmp_path / "palyra.toml"
    toml.write_text(f'[ledger]\nurl = "{url}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    printed = subprocess.run(
        [sys.executable, "-m", "palyra", "--config", str(toml), "config", "show"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["ledger"]["url"] == url.replace(SECRET, "***")
    everything = " ".join(map(str, shown)) + caplog.text + printed.stdout
    assert SECRET not in everything + printed.stderr
