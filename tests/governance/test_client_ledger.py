"""The client's ledger on disk: where it lives and when it is made, what a
failing ledger does to calls (nothing), what it never holds (secrets), and
what survives a process killed mid-burst or shared by several processes."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import loopback_transports, upstream_config
from tests.upstream import Upstream, error_reply

USER = [{"role": "user", "content": "hello"}]
CHILD = [sys.executable, "-m", "tests.governance.client_child"]


def test_the_default_ledger_is_made_in_home_on_the_first_record(
    tmp_path: Path,
) -> None:
    client = palyra.Palyra(home=tmp_path)
    assert client.usage.health().path == str(tmp_path / "usage.sqlite3")
    assert list(tmp_path.iterdir()) == []  # nothing made by construction
    client.chat(USER)
    path = tmp_path / "usage.sqlite3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r.model for r in client.usage.records()] == ["deterministic-chat"]
    client.close()
    # Another client on the same home reads what the first wrote.
    assert len(palyra.Palyra(home=tmp_path).usage.records()) == 1


def test_the_ledger_table_sets_the_path_or_turns_it_off(tmp_path: Path) -> None:
    client = palyra.Palyra({"ledger": {"path": "sub/calls.db"}}, home=tmp_path)
    client.chat(USER)
    assert (tmp_path / "sub" / "calls.db").exists()
    assert client.usage.health().written == 1
    off = palyra.Palyra({"ledger": False}, home=tmp_path / "off")
    off.chat(USER)
    assert not (tmp_path / "off").exists()
    with pytest.raises(palyra.LedgerError):
        off.usage.totals("model")
    with pytest.raises(palyra.ConfigError, match=r"ledger\.timeout"):
        palyra.Palyra({"ledger": {"timeout": -1}})


def test_a_ledger_that_cannot_be_written_never_fails_a_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the ledger's directory should be")
    path = blocker / "usage.sqlite3"
    client = palyra.Palyra(ledger=palyra.SQLiteLedger(path))
    with caplog.at_level(logging.WARNING, logger="palyra"):
        replies = [client.chat(USER) for _ in range(3)]
    assert all(r.choices[0].message.content for r in replies)
    errors = [r for r in caplog.records if "usage record not kept" in r.message]
    assert len(errors) == 1  # once per outage, not once per call
    assert str(path) in errors[0].getMessage()
    health = client.usage.health()
    assert (health.ok, health.failed_writes) == (False, 3)
    assert health.last_error is not None
    assert str(path) in health.last_error
    blocker.unlink()  # the disk is fixed
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="palyra"):
        client.chat(USER)
    assert any("writable again" in r.message for r in caplog.records)
    assert client.usage.health().ok
    assert len(client.usage.records()) == 1


class Broken:
    """A user's ledger that fails with its own exception."""

    def record(self, rec: Any) -> None:
        raise RuntimeError("backend down")

    def records(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def totals(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def health(self) -> palyra.LedgerHealth:
        return palyra.LedgerHealth(
            ok=False, path=None, last_error="down", failed_writes=0, written=0
        )

    def close(self) -> None:
        pass


def test_a_user_ledger_raising_anything_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = palyra.Palyra(ledger=Broken())
    with caplog.at_level(logging.ERROR, logger="palyra"):
        client.chat(USER)
        client.chat(USER)
    [logged] = [r for r in caplog.records if "not kept" in r.message]
    assert "Broken raised RuntimeError: backend down" in logged.getMessage()


def test_secrets_never_reach_the_ledger(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    client = palyra.Palyra(
        upstream_config(upstream.base_url), home=tmp_path, **loopback_transports()
    )
    client.chat(USER, tags={"note": "plain"})
    upstream.enqueue(error_reply(401, f"Incorrect API key provided: {FAKE_KEY}"))
    with pytest.raises(palyra.AuthenticationError):
        client.chat(USER)
    client.close()
    kept = [r.error_class for r in palyra.Palyra(home=tmp_path).usage.records()]
    assert kept == [None, "AuthenticationError"]
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert FAKE_KEY.encode() not in file.read_bytes(), file
            assert FAKE_KEY[-12:].encode() not in file.read_bytes(), file


def test_sigkill_mid_burst_loses_no_call_that_had_returned(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [*CHILD, "burst", str(tmp_path), "100000"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    returned = []
    for line in child.stdout:
        returned.append(line.strip())
        if len(returned) == 200:
            os.kill(child.pid, signal.SIGKILL)
            break
    returned += child.stdout.read().split()  # printed before the kill
    child.stdout.close()
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    path = tmp_path / "usage.sqlite3"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = {r.session for r in palyra.SQLiteLedger(path).records()}
    assert set(returned) <= kept


def test_clients_in_several_processes_share_one_ledger(tmp_path: Path) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [*CHILD, "write", str(tmp_path), "150", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert (child.returncode, out.strip(), err) == (0, "done", "")
    ledger = palyra.SQLiteLedger(tmp_path / "usage.sqlite3")
    totals = ledger.totals("agent")
    assert [t.calls for t in totals] == [150, 150, 150]
    assert all(t.cost_total is not None and t.cost_total > 0 for t in totals)
    ledger.close()
