"""Budgets shared across processes on a real Redis: 4 processes x 50
concurrent calls never pass a USD cap and a token cap together, and admit
exactly as many calls as the caps allow; a process killed holding
reservations gives them back by expiry."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import palyra
from palyra._state import RedisState
from palyra._tokens import TiktokenCounter
from tests.conftest import FAKE_KEY
from tests.helpers import completion_json
from tests.servers import RedisServer
from tests.state.budget_child import MAX_TOKENS, USER, config
from tests.upstream import Reply, Upstream

CHILD = [sys.executable, "-m", "tests.state.budget_child"]
M = Decimal(1_000_000)


def worst_case() -> tuple[int, int, Decimal]:
    """A call's prompt estimate, its worst case in tokens and its cost: the
    upstream is scripted to bill exactly that, so admission depends on
    nothing but the caps."""
    prompt = TiktokenCounter().estimate_chat("gpt-4o-mini", USER).prompt_tokens
    return prompt, prompt + MAX_TOKENS, (prompt * 1 + MAX_TOKENS * 2) / M


def exact_reply(prompt: int) -> Reply:
    body = completion_json("fine")
    body["usage"] = {
        "prompt_tokens": prompt,
        "completion_tokens": MAX_TOKENS,
        "total_tokens": prompt + MAX_TOKENS,
    }
    return Reply(json=body)


def spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CHILD, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def results(children: list[subprocess.Popen[str]]) -> list[dict[str, int]]:
    found = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        found.append(json.loads(out.strip().splitlines()[-1]))
    return found


def test_four_processes_never_pass_either_cap(
    redis_url: str, upstream: Upstream, tmp_path: Path
) -> None:
    prompt, tokens, cost = worst_case()
    usd_fits, token_fits = 29, 37
    budgets = [
        {"id": "usd", "window": "day", "hard_limit": str(cost * usd_fits)},
        {"id": "tok", "metric": "tokens", "window": "day",
         "hard_limit": tokens * token_fits + tokens - 1},
    ]  # fmt: skip
    upstream.enqueue(*[exact_reply(prompt) for _ in range(200)])
    ledger = tmp_path / "usage.sqlite3"
    spec = {
        "redis": redis_url, "base_url": upstream.base_url, "key": FAKE_KEY,
        "ledger": str(ledger), "calls": 50, "budgets": budgets,
    }  # fmt: skip
    children = [
        spawn({**spec, "mode": "threads" if i % 2 else "tasks"}) for i in range(4)
    ]
    seen = results(children)
    admitted = sum(s.get("ok", 0) for s in seen)
    assert admitted == min(usd_fits, token_fits), seen
    assert sum(s.get("refused", 0) for s in seen) == 200 - admitted, seen
    assert len(upstream.requests) == admitted  # a refused call sent nothing
    # The ledger (shared by the four) holds every admitted call, within caps.
    with palyra.Palyra(config({**spec, "budgets": budgets})) as client:
        rows = {r.key[0]: r for r in client.usage.totals(by="status")}
        assert rows["error"].calls == 200 - admitted  # refused: recorded at $0
        assert rows["error"].cost_total == 0
        row = rows["ok"]
        assert row.calls == admitted
        assert row.cost_total == cost * admitted <= cost * usd_fits
        assert row.input_uncached + row.output == tokens * admitted
    # Redis agrees, to the nano-dollar, and nothing is left reserved.
    with palyra.Palyra(
        config({**spec, "budgets": budgets}), state=RedisState(redis_url)
    ) as client:
        status = {s.policy: s for s in client.budgets.status()}
        assert status["usd"].spent == cost * admitted
        assert status["tok"].spent == tokens * admitted
        assert status["usd"].reserved == status["tok"].reserved == 0


def test_a_killed_process_gives_its_reservations_back_by_expiry(
    redis_url: str, upstream: Upstream, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    prompt, _, cost = worst_case()
    budgets = [{"id": "usd", "window": "day", "hard_limit": str(cost * 3)}]
    # The child's three calls hang at the upstream, holding the whole cap;
    # their leases last their 5 s deadline plus a 1 s margin.
    upstream.enqueue(*[Reply(json=completion_json("late"), delay=60) for _ in range(3)])
    spec = {
        "redis": redis_url, "base_url": upstream.base_url, "key": FAKE_KEY,
        "ledger": str(tmp_path / "usage.sqlite3"), "calls": 3, "budgets": budgets,
        "mode": "threads", "margin": 1.0, "timeout": 5, "deadline": 5,
    }  # fmt: skip
    child = spawn(spec)
    state = RedisState(redis_url, reservation_margin=1.0)
    with palyra.Palyra(config(spec), state=state) as client:
        try:
            deadline = time.monotonic() + 30
            while _reserved(client) < cost * 3 or len(upstream.requests) < 3:
                assert time.monotonic() < deadline, "the child never reserved"
                time.sleep(0.05)
            assert _reserved(client) == cost * 3
            upstream.enqueue(exact_reply(prompt))
            with pytest.raises(palyra.BudgetExceededError) as held:
                client.chat(USER, max_tokens=MAX_TOKENS)
            assert held.value.reserved == cost * 3  # the child's calls hold it
        finally:
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=10)  # reaped, its pipes closed
        deadline = time.monotonic() + 10
        while _reserved(client) > 0:  # its leases are no longer renewed
            assert time.monotonic() < deadline, "the reservations never expired"
            time.sleep(0.1)
        for _ in range(3):  # the others can spend the whole cap again
            client.chat(USER, max_tokens=MAX_TOKENS)


def _reserved(client: palyra.Palyra) -> Decimal:
    [status] = client.budgets.status()
    return status.reserved


def test_a_redis_restart_mid_run_fails_typed_never_overspends_and_recovers(
    redis_server: RedisServer, redis_url: str, upstream: Upstream, tmp_path: Path
) -> None:
    prompt, _, cost = worst_case()
    fits = 14
    budgets = [{"id": "usd", "window": "day", "hard_limit": str(cost * fits)}]
    # The first six calls are in flight across the whole outage and quiet
    # period: their reservations must be re-asserted on the Redis that comes
    # back empty, or the rebuilt window would admit their worth again.
    upstream.enqueue(*[_slow(prompt, 6.0) for _ in range(6)])
    upstream.enqueue(*[_slow(prompt, 0.2) for _ in range(400)])
    spec = {
        "redis": redis_url, "base_url": upstream.base_url, "key": FAKE_KEY,
        "ledger": str(tmp_path / "usage.sqlite3"), "calls": 120, "workers": 4,
        "pause": 0.2, "budgets": budgets, "mode": "threads",
        "on_unavailable": "fail_closed",
    }  # fmt: skip
    children = [spawn({**spec, "mode": m}) for m in ("threads", "tasks")]
    time.sleep(1.0)
    redis_server.stop()
    time.sleep(1.0)
    restarted = time.time()
    redis_server.start()  # empty: it kept nothing
    seen = results(children)
    ok = sum(s.get("ok", 0) for s in seen)
    assert ok <= fits, seen  # reservations in flight were put back, not lost
    assert all(set(s) <= {"ok", "refused", "unavailable"} for s in seen), seen
    assert sum(s.get("unavailable", 0) for s in seen) > 0  # failed typed
    with palyra.Palyra(config(spec)) as client:
        kept = client.usage.records(status="ok")
        assert len(kept) == ok  # no settled record lost
        assert sum((r.cost_total or 0 for r in kept), Decimal(0)) <= cost * fits
        assert any(r.started_at.timestamp() > restarted for r in kept)  # recovered


def _slow(prompt: int, delay: float) -> Reply:
    reply = exact_reply(prompt)
    reply.delay = delay
    return reply
