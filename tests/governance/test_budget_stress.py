"""The stress test of issue 11: 200 concurrent async calls plus 8 threads of
sync calls, all at once, against one hard cap (USD, then tokens), through a
real client on the loopback upstream and on the offline deterministic
provider.

Every call asks the same thing, so every admitted call has the same actual
usage ``A`` (cost or tokens, measured first) and reserves the same worst case
``W`` (prompt estimate plus ``max_tokens``, read off a refusal), ``A < W``.
With the cap ``C``, the number ``n`` of admitted calls is exactly
``floor((C - W) / A) + 1``:

* at most: take the last call admitted. Each of the ``n - 1`` admitted before
  it then counted ``A`` (settled) or ``W >= A`` (still reserved), and it was
  admitted only because spent + reserved + W <= C, so
  ``(n - 1) * A + W <= C``;
* at least: each thread keeps calling until it is refused while nothing at all
  is reserved (``exc.reserved == 0``); such a refusal means spent + W > C with
  spent final (nothing in flight can add to it), so ``n * A > C - W``.

That is the most the cap allows when each call must fit its worst case:
``floor(C / A)`` (what the settled costs alone would fit) less at most one
call's worst-case spread, ``n >= floor(C / A) - ceil((W - A) / A)``. And the
settled total ``n * A <= C - W + A <= C`` never passes the cap.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import loopback_transports
from tests.upstream import Upstream

pytestmark = [pytest.mark.anyio]

USER = [{"role": "user", "content": "three words here"}]
MAX_TOKENS = 12  # the reply is 3 words: the worst case is well above the actual
ASYNC_CALLS = 200
THREADS = 8
TARGET = 150  # admitted calls the cap is sized for
MAX_TRIES = 5000  # per thread: a loop that never ends is a failure, not a hang


@pytest.fixture(name="loopback")
def loopback_fixture(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    return {
        "providers": [
            {
                "id": "up",
                "kind": "openai",
                "base_url": upstream.base_url,
                "api_key_env": "UP_KEY",
                "timeout": 10,
                "max_retries": 0,
            }
        ],
        "models": [
            {
                "id": "gpt-4o-mini",
                "provider": "up",
                "context_window": 128000,
                "pricing": {"input": "0.15", "output": "0.60"},
            }
        ],
    }


DETERMINISTIC: dict[str, Any] = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {
            "id": "bot",
            "provider": "local",
            "max_output_tokens": 50,
            "pricing": {"input": "1", "output": "2"},
        }
    ],
}


def amount(metric: str, reply: palyra.ChatCompletion) -> Decimal:
    """What a reply counts against a budget of ``metric``."""
    assert reply.palyra is not None
    if metric == "tokens":
        usage = reply.palyra.usage
        assert usage is not None
        return Decimal(usage.input_total + usage.output)
    cost = reply.palyra.cost
    assert cost is not None
    assert cost.total is not None
    return cost.total


def record_amount(metric: str, rec: palyra.UsageRecord) -> Decimal:
    if metric == "tokens":
        return Decimal(
            rec.input_uncached + rec.cache_read + rec.cache_write + rec.output
        )
    assert rec.cost_total is not None
    return rec.cost_total


def measure(config: dict[str, Any], metric: str) -> tuple[Decimal, Decimal]:
    """``(A, W)``: one call's actual amount and its worst case (reserved)."""
    probe = palyra.Palyra(config, ledger=False, **loopback_transports())
    actual = amount(metric, probe.chat(USER, max_tokens=MAX_TOKENS))
    probe.budgets.add(id="none", metric=metric, hard_limit=0)
    with pytest.raises(palyra.BudgetExceededError) as caught:
        probe.chat(USER, max_tokens=MAX_TOKENS)
    probe.close()
    assert caught.value.requested is not None
    return actual, caught.value.requested


@pytest.mark.parametrize("metric", ["usd", "tokens"])
@pytest.mark.parametrize("where", ["loopback", "deterministic"])
async def test_concurrent_calls_never_pass_the_cap(
    request: pytest.FixtureRequest, where: str, metric: str
) -> None:
    config = dict(
        request.getfixturevalue("loopback") if where == "loopback" else DETERMINISTIC
    )
    actual, worst = measure(config, metric)
    assert worst > actual > 0  # a spread to over-reserve: the bound has teeth
    # Half a spread past TARGET calls: neither bound sits on a boundary.
    cap = TARGET * actual + (worst - actual) / 2
    if metric == "tokens":
        cap = cap.to_integral_value()  # a tokens budget's limits are whole
    config["budgets"] = [{"id": "cap", "metric": metric, "hard_limit": str(cap)}]
    ledger = palyra.MemoryLedger()
    client = palyra.Palyra(config, ledger=ledger, **loopback_transports(limits=_pool()))

    amounts: list[Decimal] = []  # every admitted call's actual amount
    refused: list[palyra.BudgetExceededError] = []
    other: list[BaseException] = []
    by_threads = [0] * THREADS
    lock = threading.Lock()
    go = threading.Event()
    looping: list[bool] = []

    def worker(i: int) -> None:
        go.wait()
        for _ in range(MAX_TRIES):
            try:
                reply = client.chat(USER, max_tokens=MAX_TOKENS)
            except palyra.BudgetExceededError as exc:
                with lock:
                    refused.append(exc)
                if exc.reserved == 0:
                    return  # final: nothing in flight, spent + W > cap
                time.sleep(0.001)
            except BaseException as exc:  # reported below
                with lock:
                    other.append(exc)
                return
            else:
                with lock:
                    amounts.append(amount(metric, reply))
                    by_threads[i] += 1
        looping.append(True)

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"stress-{i}")
        for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()

    async def first() -> Any:
        # The threads go once the loop runs its tasks: set before gather,
        # they could take the whole cap before the first task ran.
        go.set()
        return await client.achat(USER, max_tokens=MAX_TOKENS)

    results = await asyncio.gather(
        first(),
        *(client.achat(USER, max_tokens=MAX_TOKENS) for _ in range(ASYNC_CALLS - 1)),
        return_exceptions=True,
    )
    for thread in threads:
        await asyncio.to_thread(thread.join, 30)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads)
    assert not looping, "a thread never got a final refusal"

    by_async = 0
    for result in results:
        if isinstance(result, palyra.BudgetExceededError):
            refused.append(result)
        elif isinstance(result, BaseException):
            other.append(result)
        else:
            amounts.append(amount(metric, result))
            by_async += 1
    assert other == []  # every refused call raised BudgetExceededError only
    assert {e.reason for e in refused} == {"hard_limit"}
    assert {(e.policy, e.limit) for e in refused} == {("cap", cap)}
    assert set(amounts) == {actual}  # the premise: identical actual usage

    admitted = len(amounts)
    assert admitted == by_async + sum(by_threads)
    assert admitted + len(refused) > ASYNC_CALLS  # the cap did refuse calls
    assert by_async > 0
    assert sum(by_threads) > 0
    # The count derived in the module docstring, within one worst-case spread
    # of what the settled costs alone would fit.
    most = math.floor((cap - worst) / actual) + 1
    fits = math.floor(cap / actual)
    spread = math.ceil((worst - actual) / actual)
    assert fits - spread <= most
    assert most <= fits
    assert admitted == most, (admitted, most, fits, actual, worst, cap)

    [status] = client.budgets.status()
    assert status.spent == admitted * actual <= cap - worst + actual
    assert (status.reserved, status.in_flight) == (0, 0)
    records = ledger.records()
    ok = [r for r in records if r.status == "ok"]
    assert len(ok) == admitted
    assert sum(record_amount(metric, r) for r in ok) == admitted * actual <= cap
    failed = [r for r in records if r.status != "ok"]
    assert len(failed) == len(refused)
    assert {(r.error_class, r.attempts) for r in failed} == {("BudgetExceededError", 0)}
    await client.aclose()
    print(
        f"{where}/{metric}: A={actual} W={worst} cap={cap} admitted={admitted}"
        f" (most {most}, fits {fits}) (async {by_async}, threads {sum(by_threads)});"
        f" refused {len(refused)}, {sum(1 for e in refused if e.reserved)} of"
        f" them while calls held reservations; {elapsed:.2f}s"
    )
    assert elapsed < 5, f"{where}/{metric} took {elapsed:.2f}s"


def _pool() -> Any:
    import httpx

    # Every async call may hold a connection at once.
    return httpx.Limits(max_connections=ASYNC_CALLS + THREADS)
