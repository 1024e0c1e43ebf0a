"""OpenTelemetry with the SDK and its in-memory exporters (the dev extra), on
a real loopback upstream: a span per call and one per attempt, the GenAI
attributes and palyra's own, error status, the GenAI metrics, the trace
context carried upstream (never baggage), sync and async alike; a tracing
failure never touches a call; no key anywhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import palyra
from tests.conftest import FAKE_KEY
from tests.helpers import chunk_json, completion_json, drain, upstream_config
from tests.observe.conftest import Otel
from tests.observe.test_events import Events, chat, stream
from tests.upstream import Reply, Upstream, error_reply

pytestmark = pytest.mark.anyio
DRIVERS = ("sync", "async")
STREAM = [chunk_json("Hel"), chunk_json("lo"), chunk_json(None, "stop"), "[DONE]"]


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    with Upstream(api_key=FAKE_KEY) as server:
        yield server


def priced(up: Upstream, **observability: Any) -> dict[str, Any]:
    config = upstream_config(up.base_url)
    config["models"][0]["pricing"] = {
        "input": "1.5",
        "output": "6",
        "cached_input": "0.75",
    }
    config["observability"] = {"otel": True, **observability}
    return config


def cached_answer(text: str = "hi") -> dict[str, Any]:
    body = completion_json(text, model="gpt-4o-mini-2024-07-18")
    body["usage"] = {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 8},
    }
    return body


def by_name(spans: list[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def children(spans: list[Any], parent: Any) -> list[Any]:
    kids = [
        s
        for s in spans
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    return sorted(kids, key=lambda s: s.start_time)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_call_is_a_span_with_a_child_per_attempt(
    up: Upstream, otel: Otel, driver: str
) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    events = Events()
    c = palyra.Palyra(priced(up), on_event=events, ledger=palyra.MemoryLedger())
    up.enqueue(Reply(json=cached_answer()))
    reply = await chat(c, driver, agent="bot", session="s1", tags={"team": "x"})
    spans = otel.spans(c)
    (call,) = by_name(spans)["chat gpt-4o-mini"]
    (attempt,) = children(spans, call)
    assert call.parent is None  # no span of the app's was current
    assert call.kind is SpanKind.CLIENT
    assert call.status.status_code is StatusCode.UNSET
    a = dict(call.attributes)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"  # an OpenAI-compatible server
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"  # upstream's
    assert a["gen_ai.response.id"] == "chatcmpl-test"
    assert a["gen_ai.usage.input_tokens"] == 12
    assert a["gen_ai.usage.output_tokens"] == 3
    assert a["gen_ai.usage.cache_read.input_tokens"] == 8
    assert a["palyra.usage.cached_tokens"] == 8
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert reply.palyra.cost.total is not None
    assert Decimal(str(a["palyra.cost.total"])) == reply.palyra.cost.total
    assert a["palyra.cost.currency"] == "USD"
    assert a["palyra.call_id"] == events.seen[-1].call_id
    assert a["palyra.outcome"] == "ok"
    assert (a["palyra.provider"], a["palyra.model"]) == ("up", "gpt-4o-mini")
    assert a["palyra.attempts"] == 1
    assert "palyra.failover" not in a
    assert (a["palyra.agent"], a["palyra.session"]) == ("bot", "s1")
    assert a["palyra.tag.team"] == "x"
    assert "error.type" not in a
    # The call's span lasts the call; its attempt lies inside it.
    assert call.start_time <= attempt.start_time <= attempt.end_time <= call.end_time
    assert (call.end_time - call.start_time) / 1e6 == pytest.approx(
        reply.palyra.latency_ms, abs=5
    )
    b = dict(attempt.attributes)
    assert attempt.name == "palyra.attempt"
    assert b["palyra.attempt"] == 1
    assert b["palyra.attempt.outcome"] == "success"
    assert b["http.response.status_code"] == 200
    assert b["server.address"] == "127.0.0.1"
    assert not any(k.startswith("gen_ai.") for k in b)  # one generation: the call
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_retries_and_failover_are_attempts_of_one_call(
    up: Upstream, otel: Otel, driver: str
) -> None:
    from opentelemetry.trace import StatusCode

    config = priced(up)
    config["providers"][0]["max_retries"] = 1
    config["providers"].append({**config["providers"][0], "id": "backup"})
    config["models"][0]["fallbacks"] = ["backup-mini"]
    config["models"].append(
        {"id": "backup-mini", "provider": "backup", "upstream_model": "mini-2"}
    )
    c = palyra.Palyra(config, ledger=False, sleep=lambda s: None)
    up.enqueue(
        error_reply(500, "boom"),
        error_reply(500, "boom"),  # the retry fails too: failover
        Reply(json=completion_json("hi")),
    )
    await chat(c, driver)
    spans = otel.spans(c)
    (call,) = by_name(spans)["chat gpt-4o-mini"]
    attempts = children(spans, call)
    assert [s.attributes["palyra.attempt"] for s in attempts] == [1, 2, 3]
    first, second, third = (dict(s.attributes) for s in attempts)
    assert first["http.response.status_code"] == 500
    assert first["error.type"] == "InternalServerError"
    assert first["palyra.attempt.failure"] == "server_error"
    assert first["palyra.attempt.outcome"] == "error"
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert second["palyra.model"] == "gpt-4o-mini"
    assert (third["palyra.provider"], third["palyra.model"]) == (
        "backup",
        "backup-mini",
    )
    assert third["palyra.upstream_model"] == "mini-2"
    assert attempts[2].status.status_code is StatusCode.UNSET
    # In order, one after the other, inside the call.
    assert attempts[0].end_time <= attempts[1].start_time
    assert attempts[1].end_time <= attempts[2].start_time
    a = dict(call.attributes)
    assert a["palyra.attempts"] == 3
    assert a["palyra.failover"] is True
    assert a["palyra.failover.from"] == "up/gpt-4o-mini"
    assert (a["palyra.provider"], a["palyra.model"]) == ("backup", "backup-mini")
    assert call.status.status_code is StatusCode.UNSET
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_failed_call_has_error_status_and_type(
    up: Upstream, otel: Otel, driver: str
) -> None:
    from opentelemetry.trace import StatusCode

    c = palyra.Palyra(priced(up), ledger=False)
    up.enqueue(error_reply(429, "slow down"))
    with pytest.raises(palyra.RateLimitError):
        await chat(c, driver)
    spans = otel.spans(c)
    (call,) = by_name(spans)["chat gpt-4o-mini"]
    assert call.status.status_code is StatusCode.ERROR
    assert call.status.description == "RateLimitError"
    assert call.attributes["error.type"] == "RateLimitError"
    assert call.attributes["palyra.outcome"] == "error"
    (attempt,) = children(spans, call)
    assert attempt.attributes["http.response.status_code"] == 429
    points = otel.points()
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "RateLimitError"
    assert duration.count == 1
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_budget_block_says_which_budget(
    up: Upstream, otel: Otel, driver: str
) -> None:
    config = priced(up)
    config["budgets"] = [
        {"id": "cap", "metric": "tokens", "window": "day", "hard_limit": 1}
    ]
    c = palyra.Palyra(config, ledger=palyra.MemoryLedger())
    with pytest.raises(palyra.BudgetExceededError):
        await chat(c, driver, agent="bot")
    spans = otel.spans(c)
    (call,) = by_name(spans)["chat gpt-4o-mini"]
    (skipped,) = children(spans, call)  # passed over: nothing was sent
    assert skipped.attributes["palyra.attempt.outcome"] == "skipped"
    assert skipped.attributes["error.type"] == "BudgetExceededError"
    assert skipped.start_time == skipped.end_time
    a = dict(call.attributes)
    assert a["error.type"] == "BudgetExceededError"
    assert a["palyra.budget.blocked"] is True
    assert a["palyra.budget.policy"] == "cap"
    assert a["palyra.budget.metric"] == "tokens"
    assert a["palyra.budget.reason"] == "hard_limit"
    assert a["palyra.budget.limit"] == 1.0
    assert a["palyra.attempts"] == 0
    (blocks,) = otel.points()["palyra.budget.blocks"]
    assert blocks.value == 1
    assert blocks.attributes["palyra.budget.policy"] == "cap"
    assert up.requests == []
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_marks_its_first_chunk(
    up: Upstream, otel: Otel, driver: str
) -> None:
    c = palyra.Palyra(priced(up), ledger=False)
    up.enqueue(Reply(sse=STREAM, chunk_delay=0.05))
    await drain(await stream(c, driver))
    spans = otel.spans(c)
    (call,) = by_name(spans)["chat gpt-4o-mini"]
    (attempt,) = children(spans, call)
    (first,) = call.events
    assert first.name == "gen_ai.first_chunk"
    assert call.start_time < first.timestamp < call.end_time
    assert call.attributes["palyra.stream"] is True
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    ttft = call.attributes["palyra.ttft_ms"]
    assert (first.timestamp - call.start_time) / 1e6 == pytest.approx(ttft, abs=0.01)
    # The attempt that opened the stream lasts until the stream ends.
    assert attempt.end_time == call.end_time
    assert (call.end_time - call.start_time) / 1e6 >= 100  # chunks 50 ms apart
    (chunk,) = otel.points()["gen_ai.client.operation.time_to_first_chunk"]
    assert chunk.count == 1
    assert chunk.sum == pytest.approx(ttft / 1000, abs=1e-5)
    await c.aclose()


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_closed_early_is_cancelled_not_failed(
    up: Upstream, otel: Otel, driver: str
) -> None:
    from opentelemetry.trace import StatusCode

    c = palyra.Palyra(priced(up), ledger=False)
    up.enqueue(Reply(sse=STREAM, chunk_delay=0.05))
    s = await stream(c, driver)
    if driver == "sync":
        next(iter(s))
        s.close()
    else:
        await s.__anext__()
        await s.aclose()
    (call,) = by_name(otel.spans(c))["chat gpt-4o-mini"]
    assert call.attributes["palyra.outcome"] == "cancelled"
    assert call.status.status_code is StatusCode.UNSET
    assert "error.type" not in call.attributes
    await c.aclose()


async def test_the_metrics_count_what_the_ledger_holds(
    up: Upstream, otel: Otel
) -> None:
    ledger = palyra.MemoryLedger()
    c = palyra.Palyra(priced(up), ledger=ledger)
    up.enqueue(
        Reply(json=cached_answer("one")),
        Reply(json=completion_json("two")),
        Reply(sse=STREAM),
        error_reply(500, "boom"),
    )
    c.chat(HI_)
    await c.achat(HI_)
    with c.stream(HI_) as s:
        for _ in s:
            pass
    with pytest.raises(palyra.InternalServerError):
        c.chat(HI_)
    assert c.flush(5)
    points = otel.points()
    records = ledger.records()
    assert sum(p.count for p in points["gen_ai.client.operation.duration"]) == 4
    usage = points["gen_ai.client.token.usage"]

    def tokens(kind: str, field: str) -> float:
        return sum(
            getattr(p, field)
            for p in usage
            if p.attributes["gen_ai.token.type"] == kind
        )

    assert tokens("input", "sum") == sum(
        r.input_uncached + r.cache_read + r.cache_write for r in records
    )
    assert tokens("output", "sum") == sum(r.output for r in records)
    assert tokens("input", "count") == 3  # the failed call billed nothing
    costs = points["palyra.cost"]
    spent = sum((r.cost_total or Decimal(0)) for r in records)
    assert sum(p.value for p in costs) == pytest.approx(float(spent), rel=1e-12)
    assert {p.attributes["palyra.cost.currency"] for p in costs} == {"USD"}
    for point in points["gen_ai.client.operation.duration"]:
        assert point.attributes["gen_ai.operation.name"] == "chat"
        assert point.attributes["gen_ai.provider.name"] == "openai"
        assert point.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    breakers = {
        tuple(sorted(p.attributes.items())): p.value
        for p in points["palyra.breaker.state"]
    }
    key = (("palyra.model", "gpt-4o-mini"), ("palyra.provider", "up"))
    assert breakers == {key: 0}  # closed; closed clients' are gone
    await c.aclose()


HI_ = [{"role": "user", "content": "say hi"}]


@pytest.mark.parametrize("driver", DRIVERS)
async def test_the_trace_context_goes_upstream(
    up: Upstream, otel: Otel, driver: str
) -> None:
    """By default the app's span's context (the upstream joins the app's
    trace); with "span", the call span's; with "none", nothing. Never
    baggage."""
    from opentelemetry import baggage, context, trace

    tracer = trace.get_tracer("app")
    found = {}
    for mode in ("parent", "span", "none"):
        c = palyra.Palyra(priced(up, otel_propagate=mode), ledger=False)
        up.enqueue(Reply(json=completion_json("hi")))
        token = context.attach(baggage.set_baggage("user", "alice@example.com"))
        try:
            with tracer.start_as_current_span("app work") as app:
                await chat(c, driver)
        finally:
            context.detach(token)
        spans = otel.spans(c)
        otel.exporter.clear()
        (call,) = by_name(spans)["chat gpt-4o-mini"]
        assert call.parent is not None
        assert call.parent.span_id == app.get_span_context().span_id
        assert call.context.trace_id == app.get_span_context().trace_id
        sent = up.requests[-1].headers
        assert "baggage" not in sent
        found[mode] = (sent.get("traceparent"), app, call)
        await c.aclose()
    header, app, _ = found["parent"]
    ids = app.get_span_context()
    assert header == f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    header, _, call = found["span"]
    ids = call.context
    assert header == f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    assert found["none"][0] is None


async def test_no_app_span_no_trace_context_upstream(up: Upstream, otel: Otel) -> None:
    c = palyra.Palyra(priced(up), ledger=False)
    up.enqueue(Reply(json=completion_json("hi")))
    c.chat(HI_)
    assert "traceparent" not in up.requests[-1].headers
    (call,) = by_name(otel.spans(c))["chat gpt-4o-mini"]
    assert call.parent is None
    await c.aclose()


def test_otel_is_off_unless_asked(up: Upstream, otel: Otel) -> None:
    config = priced(up)
    c = palyra.Palyra(config, ledger=False, otel=False)  # the argument wins
    assert c.observability.tracing is None
    up.enqueue(Reply(json=completion_json("hi")))
    c.chat(HI_)
    assert otel.spans(c) == []
    c.close()
    config["observability"] = {}
    plain = palyra.Palyra(config, ledger=False)
    assert plain.observability.tracing is None
    on = palyra.Palyra(config, ledger=False, otel=True)
    assert on.observability.tracing is not None
    plain.close()
    on.close()


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(palyra.ConfigError) as caught:
        palyra.Palyra(otel=True)
    assert "observability.otel" in str(caught.value)
    assert "palyra[otel]" in str(caught.value)


def test_a_bad_propagate_value_is_a_config_error() -> None:
    with pytest.raises(palyra.ConfigError, match="otel_propagate"):
        palyra.Palyra({"observability": {"otel": True, "otel_propagate": "yes"}})


def test_a_tracing_failure_never_touches_a_call(
    up: Upstream, otel: Otel, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    events = Events()
    c = palyra.Palyra(priced(up, otel_propagate="span"), on_event=events, ledger=False)
    tracing = c.observability.tracing
    assert tracing is not None

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("exporter on fire")

    monkeypatch.setattr(tracing.tracer, "start_span", broken)
    up.enqueue(Reply(json=completion_json("one")), Reply(json=completion_json("two")))
    assert c.chat(HI_).choices[0].message.content == "one"
    assert c.chat(HI_).choices[0].message.content == "two"
    assert c.flush(5)
    assert events.kinds() == ["start", "end", "start", "end"]  # delivered
    assert tracing.failures == 4  # each call's trace carried, each one's spans
    assert c.observability.stats().otel_failures == 4
    said = [r for r in caplog.records if "said once" in r.getMessage()]
    assert len(said) == 1
    c.close()


def test_no_key_in_any_span_or_metric(up: Upstream, otel: Otel) -> None:
    c = palyra.Palyra(priced(up), ledger=False)
    up.enqueue(
        Reply(json=completion_json("hi")), error_reply(401, f"bad key {FAKE_KEY}")
    )
    c.chat(HI_)
    with pytest.raises(palyra.AuthenticationError):
        c.chat(HI_)
    spans = otel.spans(c)
    points = otel.points()
    dumped = " ".join(s.to_json() for s in spans) + repr(points)
    assert FAKE_KEY not in dumped
    assert FAKE_KEY[-8:] not in dumped
    assert "say hi" not in dumped  # no content either
    c.close()


def test_many_threads_one_span_each(otel: Otel) -> None:
    """16 threads x 20 calls: 320 call spans, each with its own attempt and
    its own id, none lost or doubled."""
    import threading

    c = palyra.Palyra({"observability": {"otel": True}}, ledger=False)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                c.chat(HI_)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    spans = otel.spans(c)
    calls = [s for s in spans if s.name.startswith("chat ")]
    attempts = [s for s in spans if s.name == "palyra.attempt"]
    assert len(calls) == len(attempts) == 320
    assert len({s.attributes["palyra.call_id"] for s in calls}) == 320
    parents = {s.parent.span_id for s in attempts if s.parent is not None}
    assert parents == {s.context.span_id for s in calls}
    c.close()


def test_nothing_of_opentelemetry_loads_unless_asked() -> None:
    import subprocess

    code = (
        "import sys, palyra; c = palyra.Palyra(ledger=False);"
        " c.chat([{'role': 'user', 'content': 'hi'}]); c.close();"
        " print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_routing_is_told_on_the_span(otel: Otel) -> None:
    """Enforced routing: the span is named for what the caller asked, its
    served model is routing's choice, and palyra.routing.* say why."""
    from tests.routing.registry import SHORT, registry

    config = registry(mode="enforced")
    config["observability"] = {"otel": True}
    c = palyra.Palyra(config, ledger=False)
    reply = c.chat(SHORT)
    decision = reply.palyra.routing
    assert decision is not None
    (call,) = [s for s in otel.spans(c) if s.name.startswith("chat ")]
    a = dict(call.attributes)
    assert call.name == f"chat {decision.requested}"
    assert a["gen_ai.request.model"] == decision.requested == "mid"
    assert a["palyra.model"] == decision.chosen == reply.palyra.model
    assert a["palyra.routing.mode"] == "enforced"
    assert a["palyra.routing.tier"] == decision.tier
    assert a["palyra.routing.chosen"] == decision.chosen
    assert a["palyra.routing.requested"] == "mid"
    assert a["palyra.routing.score"] == pytest.approx(decision.score, abs=1e-4)
    c.close()


class Counting:
    """A span processor of the app's: which spans started, which ended."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.started: dict[int, str] = {}
        self.ended: set[int] = set()
        self.fail_on = fail_on

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started[span.context.span_id] = span.name
        if span.name == self.fail_on:
            raise RuntimeError("an app's span processor, broken")

    def on_end(self, span: Any) -> None:
        self.ended.add(span.context.span_id)

    def _on_ending(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@pytest.fixture
def counting() -> Iterator[Counting]:
    from opentelemetry import trace

    made = Counting()
    provider: Any = trace.get_tracer_provider()
    provider.add_span_processor(made)
    yield made
    made.fail_on = None  # the provider keeps it: harmless from now on


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_stream_cut_mid_way_its_attempt_lasts_until_the_cut(
    up: Upstream, otel: Otel, driver: str
) -> None:
    c = palyra.Palyra(priced(up), ledger=False)
    up.enqueue(Reply(sse=STREAM, chunk_delay=0.1, cut_after=3))
    with pytest.raises(palyra.APIConnectionError):
        await drain(await stream(c, driver))
    spans = otel.spans(c)
    (call,) = by_name(spans)["chat gpt-4o-mini"]
    (attempt,) = children(spans, call)
    assert call.attributes["error.type"] == "StreamInterruptedError"
    assert (call.end_time - call.start_time) / 1e6 >= 200  # 3 chunks 100 ms apart
    assert attempt.end_time == call.end_time  # its request was out until the cut
    await c.aclose()


def test_a_started_span_ends_even_when_its_end_is_dropped(
    otel: Otel, counting: Counting
) -> None:
    """With "span", the call's span starts on the call's path and the
    upstream is told of it: a full queue must not leave it open forever."""
    import time

    config = {
        "observability": {"otel": True, "otel_propagate": "span", "queue_size": 2}
    }
    c = palyra.Palyra(config, ledger=False, on_event=lambda e: time.sleep(0.2))
    for _ in range(4):
        c.chat(HI_)
    assert c.flush(5)
    assert c.observability.stats().dropped > 0
    calls = {k for k, name in counting.started.items() if name.startswith("chat ")}
    assert len(calls) == 4
    assert calls <= counting.ended
    c.close()


def test_a_raising_span_processor_loses_no_other_part(
    otel: Otel, counting: Counting
) -> None:
    counting.fail_on = "palyra.attempt"
    c = palyra.Palyra({"observability": {"otel": True}}, ledger=False)
    assert c.chat(HI_).choices[0].message.content
    assert c.flush(5)
    calls = {k for k, name in counting.started.items() if name.startswith("chat ")}
    assert len(calls) == 1
    assert calls <= counting.ended  # the call's span still ended
    assert otel.points()["gen_ai.client.operation.duration"]  # metrics recorded
    assert c.observability.stats().otel_failures == 1
    c.close()


def test_the_breaker_gauge_reports_each_models_worst_state(otel: Otel) -> None:
    """Two clients of the same model: one's breaker open, the gauge says
    open; a closed client leaves it."""
    a = palyra.Palyra({"observability": {"otel": True}}, ledger=False)
    b = palyra.Palyra({"observability": {"otel": True}}, ledger=False)
    for c in (a, b):
        c.chat(HI_)
    real = a._pipeline.health.snapshot
    a._pipeline.health.snapshot = lambda: [  # type: ignore[method-assign]
        h.model_copy(update={"state": "open"}) for h in real()
    ]
    key = (("palyra.model", "deterministic-chat"), ("palyra.provider", "deterministic"))

    def gauge() -> dict[Any, Any]:
        return {
            tuple(sorted(p.attributes.items())): p.value
            for p in otel.points().get("palyra.breaker.state", [])
        }

    assert gauge()[key] == 2
    a.close()
    assert gauge()[key] == 0
    b.close()
    assert key not in gauge()


def test_the_breaker_gauge_holds_while_clients_come_and_go(otel: Otel) -> None:
    import threading

    from opentelemetry import metrics

    from palyra._observe.otel_metrics import OtelMetrics, _breakers

    meter = metrics.get_meter("palyra-churn")
    stop = threading.Event()

    def churn() -> None:
        made: list[OtelMetrics] = []
        while not stop.is_set():
            made.append(OtelMetrics(meter, list, metrics.Observation))
            if len(made) > 20:
                made.pop(0).close()
        for m in made:
            m.close()

    threads = [threading.Thread(target=churn) for _ in range(2)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for t in threads:
            t.start()
        for _ in range(3000):
            list(_breakers(None))  # raised "Set changed size" before
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sys.setswitchinterval(switch)
