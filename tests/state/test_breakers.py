"""Circuit breakers shared on a real Redis: a breaker opened in one process
refuses calls in another before they send anything, and at half-open exactly
one probe of all processes reaches the upstream."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import palyra
from palyra._state import RedisState
from tests.conftest import FAKE_KEY
from tests.helpers import completion_json
from tests.state.breaker_child import USER, config
from tests.upstream import Reply, Upstream, error_reply

CHILD = [sys.executable, "-m", "tests.state.breaker_child"]


def spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CHILD, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(child: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_an_open_breaker_is_refused_elsewhere_and_one_probe_goes_through(
    redis_url: str, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    spec = {"redis": redis_url, "base_url": upstream.base_url, "key": FAKE_KEY}
    upstream.enqueue(error_reply(500, "boom"), error_reply(500, "boom"))
    with palyra.Palyra(config(spec), state=RedisState(redis_url)) as a:
        for _ in range(2):
            with pytest.raises(palyra.InternalServerError):
                a.chat(USER)
        opened = time.time()
        assert a.health()[0].state == "open"
        time.sleep(0.3)  # its open reaches Redis (the bus's thread)
        # The probe, when it comes, is slow: every other call of the burst
        # arrives while it is out.
        upstream.enqueue(Reply(json=completion_json("back"), delay=1.0))
        start_at = opened + 2.3  # past the 2 s cooldown
        children = [
            spawn({**spec, "calls": 6, "start_at": start_at, "probe_first": i == 0})
            for i in range(2)
        ]
        time.sleep(max(start_at - time.time(), 0))
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(lambda _: outcome_of(a), range(3)))
        found = [result(c) for c in children]
    # A process that never called the model refused its first call: the
    # breaker another process opened applied before anything was sent.
    assert found[0]["first"] == "NoProviderAvailableError"
    bursts = [f["burst"] for f in found] + [{o: outcomes.count(o) for o in outcomes}]
    oks = sum(b.get("ok", 0) for b in bursts)
    assert oks == 1, bursts  # one probe of all three processes
    assert len(upstream.requests) == 3  # two failures, then the probe
    assert all(set(b) <= {"ok", "NoProviderAvailableError"} for b in bursts)


def outcome_of(client: palyra.Palyra) -> str:
    try:
        client.chat(USER)
    except palyra.PalyraError as exc:
        return type(exc).__name__
    return "ok"
