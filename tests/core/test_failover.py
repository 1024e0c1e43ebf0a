"""Failover across candidates, per-call deadlines and Retry-After caps, as the
pipeline drives them (MockTransport; the socket-level scenarios are in
test_faults.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import palyra
from palyra._core.failover import plan
from palyra._core.failures import classify
from palyra._core.health import HealthTracker
from palyra._registry import Registry
from palyra._request import Needs
from tests.helpers import ManualClock

USER = [{"role": "user", "content": "hi"}]
KEY = "sk-failover-SECRET-0123456789"


def _ok(model: str, text: str = "fine") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "c",
            "object": "chat.completion",
            "model": model,
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
        },
    )


def _error(status: int, message: str = "down", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}}, headers=headers)


def _sse(*events: dict[str, Any] | str) -> httpx.Response:
    lines = [
        f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"
        for event in events
    ]
    return httpx.Response(
        200,
        content="".join(lines).encode(),
        headers={"content-type": "text/event-stream"},
    )


def _chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "x",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


class Upstreams:
    """A MockTransport that answers per upstream model from scripted queues."""

    def __init__(self, **scripts: list[httpx.Response]) -> None:
        self.scripts = scripts
        self.sent: list[tuple[str, httpx.Request]] = []
        self.timeouts: list[dict[str, float]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        self.sent.append((model, request))
        self.timeouts.append(dict(request.extensions["timeout"]))
        queue = self.scripts[model]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def models(self) -> list[str]:
        return [model for model, _ in self.sent]


def _config(
    models: list[dict[str, Any]],
    providers: list[dict[str, Any]] | None = None,
    **resilience: Any,
) -> dict[str, Any]:
    base = {"kind": "openai", "auth_header": "none", "retry_backoff": 0.01}
    providers = providers or [{"id": "a"}, {"id": "b"}]
    return {
        "providers": [{**base, **p} for p in providers],
        "models": models,
        "resilience": resilience,
    }


def _client(
    config: dict[str, Any], upstreams: Upstreams, **kwargs: Any
) -> palyra.Palyra:
    clock = kwargs.pop("clock", None) or ManualClock()
    return palyra.Palyra(
        config,
        transport=httpx.MockTransport(upstreams),
        sleep=clock.sleep,
        clock=clock,
        **kwargs,
    )


TWO = [{"id": "m1", "provider": "a"}, {"id": "m2", "provider": "b"}]


# -- ordering ----------------------------------------------------------------


def _registry(models: list[dict[str, Any]], **resilience: Any) -> Registry:
    return Registry(palyra.PalyraConfig.from_dict(_config(models, **resilience)))


def _ids(registry: Registry, primary: str, needs: Needs | None = None) -> list[str]:
    model = registry.models[primary]
    resilience = registry.config.resilience
    candidates = plan(registry, model, needs or Needs(), HealthTracker(), resilience)
    return [m.id for m in candidates]


def test_explicit_fallbacks_keep_their_order_and_drop_incapable_models() -> None:
    registry = _registry(
        [
            {"id": "m1", "provider": "a", "fallbacks": ["m3", "m2"]},
            {"id": "m2", "provider": "b"},
            {"id": "m3", "provider": "b", "capabilities": {"tools": False}},
            {"id": "m4", "provider": "a"},
        ]
    )
    assert _ids(registry, "m1") == ["m1", "m3", "m2"]
    assert _ids(registry, "m1", Needs(tools=True)) == ["m1", "m2"]


def test_empty_fallbacks_disable_failover() -> None:
    registry = _registry([{**TWO[0], "fallbacks": []}, TWO[1]])
    assert _ids(registry, "m1") == ["m1"]


def test_automatic_order_same_model_then_cost_then_latency_then_config() -> None:
    registry = _registry(
        [
            {"id": "m1", "provider": "a", "upstream_model": "gpt"},
            {"id": "premium", "provider": "b", "cost_tier": "premium"},
            {"id": "slow", "provider": "b", "cost_tier": "low", "latency_tier": "high"},
            {"id": "fast", "provider": "b", "cost_tier": "low", "latency_tier": "low"},
            {"id": "plain", "provider": "b"},
            {"id": "replica", "provider": "b", "upstream_model": "gpt"},
            {"id": "off", "provider": "b", "enabled": False},
            {"id": "emb", "provider": "b", "role": "embeddings"},
        ]
    )
    assert _ids(registry, "m1") == ["m1", "replica", "fast", "slow", "plain", "premium"]


def test_automatic_order_puts_unhealthy_and_refused_credentials_last() -> None:
    models = [
        TWO[0],
        TWO[1],
        {"id": "m3", "provider": "c"},
        {"id": "m4", "provider": "d"},
    ]
    providers = [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]
    registry = Registry(palyra.PalyraConfig.from_dict(_config(models, providers)))
    health = HealthTracker()
    for _ in range(3):
        health.record(("b", "m2"), False, 1.0)
    health.mark_credential("c", "auth_invalid")
    candidates = plan(
        registry, registry.models["m1"], Needs(), health, registry.config.resilience
    )
    assert [m.id for m in candidates] == ["m1", "m4", "m3", "m2"]


def test_needs_filter_candidates() -> None:
    registry = _registry(
        [
            {"id": "m1", "provider": "a"},
            {"id": "blind", "provider": "b", "capabilities": {"vision": False}},
            {"id": "eyes", "provider": "b"},
        ]
    )
    assert _ids(registry, "m1", Needs(vision=True)) == ["m1", "eyes"]


def test_embeddings_fail_over_only_to_the_same_model_and_dimensions() -> None:
    registry = _registry(
        [
            {
                "id": "e1",
                "provider": "a",
                "role": "embeddings",
                "upstream_model": "te-3",
                "dimensions": 256,
            },
            {
                "id": "other",
                "provider": "b",
                "role": "embeddings",
                "upstream_model": "other",
                "dimensions": 256,
            },
            {
                "id": "short",
                "provider": "b",
                "role": "embeddings",
                "upstream_model": "te-3",
                "dimensions": 64,
            },
            {
                "id": "twin",
                "provider": "b",
                "role": "embeddings",
                "upstream_model": "te-3",
                "dimensions": 256,
            },
        ]
    )
    assert _ids(registry, "e1") == ["e1", "twin"]


def test_failover_switch_off_keeps_explicit_lists() -> None:
    models = [{**TWO[0], "fallbacks": ["m2"]}, TWO[1], {"id": "m3", "provider": "b"}]
    registry = _registry(models, failover=False)
    health = HealthTracker()
    m1, m3 = registry.models["m1"], registry.models["m3"]
    assert [
        m.id for m in plan(registry, m1, Needs(), health, registry.config.resilience)
    ] == [
        "m1",
        "m2",
    ]
    assert [
        m.id for m in plan(registry, m3, Needs(), health, registry.config.resilience)
    ] == ["m3"]


def _status(status: int, message: str = "no") -> palyra.APIStatusError:
    return palyra.APIStatusError(message, status_code=status)


def test_narrow_rules() -> None:
    registry = _registry(
        [
            {"id": "m1", "provider": "a", "context_window": 8000},
            {"id": "a-big", "provider": "a", "context_window": 32000},
            {"id": "b-small", "provider": "b", "context_window": 4000},
            {"id": "b-big", "provider": "b", "context_window": 128000},
            {"id": "b-unknown", "provider": "b"},
        ]
    )
    m1 = registry.models["m1"]

    def left_after(error: Exception) -> list[str]:
        resilience = registry.config.resilience
        candidates = plan(registry, m1, Needs(), HealthTracker(), resilience)
        assert next(iter(candidates)) is m1
        candidates.narrow(m1, classify(error))
        return sorted(m.id for m in candidates)

    assert left_after(_status(400)) == []
    assert left_after(_status(422)) == []
    assert left_after(_status(413)) == []
    assert left_after(_status(401)) == ["b-big", "b-small", "b-unknown"]
    assert left_after(_status(403)) == ["b-big", "b-small", "b-unknown"]
    overflow = _status(400, "This model's maximum context length is 8000 tokens")
    assert left_after(overflow) == ["a-big", "b-big"]
    assert left_after(_status(503)) == ["a-big", "b-big", "b-small", "b-unknown"]


def test_fallbacks_config_errors_name_the_path() -> None:
    with pytest.raises(palyra.ConfigError) as info:
        palyra.PalyraConfig.from_dict(
            _config(
                [
                    {"id": "m1", "provider": "a", "fallbacks": ["nope", "m1", "e"]},
                    {"id": "e", "provider": "a", "role": "embeddings"},
                    {"id": "m2", "provider": "a", "fallbacks": ["m1", "m1"]},
                ]
            )
        )
    text = str(info.value)
    assert "models[0].fallbacks[0]: unknown model 'nope'" in text
    assert "models[0].fallbacks[1]: a model cannot fall back to itself" in text
    assert "models[0].fallbacks[2]: model 'e' has role 'embeddings'" in text
    assert "models[2].fallbacks: fallbacks must not repeat" in text


def test_resilience_config_is_checked() -> None:
    with pytest.raises(palyra.ConfigError, match=r"resilience\.deadline"):
        palyra.PalyraConfig.from_dict(_config(TWO, deadline=0))
    with pytest.raises(palyra.ConfigError, match=r"resilience\.retry_after_cap"):
        palyra.PalyraConfig.from_dict(_config(TWO, retry_after_cap=-1))
    with pytest.raises(palyra.ConfigError, match=r"resilience\.retries: unknown key"):
        palyra.PalyraConfig.from_dict(_config(TWO, retries=3))


# -- calls -------------------------------------------------------------------


def test_failure_after_retries_fails_over_and_records_every_attempt() -> None:
    ups = Upstreams(m1=[_error(503)], m2=[_ok("m2")])
    with _client(_config(TWO), ups) as client:
        reply = client.chat(USER, "m1")
    info = reply.palyra
    assert (info.provider, info.model, info.requested_model) == ("b", "m2", "m1")
    assert ups.models() == ["m1", "m1", "m1", "m2"]
    assert [(a.model, a.outcome, a.failure) for a in info.attempts] == [
        ("m1", "error", "server_error"),
        ("m1", "error", "server_error"),
        ("m1", "error", "server_error"),
        ("m2", "success", None),
    ]
    assert [a.status_code for a in info.attempts] == [503, 503, 503, 200]


@pytest.mark.parametrize("status", [400, 413, 422])
def test_request_errors_never_fail_over(status: int) -> None:
    ups = Upstreams(m1=[_error(status, "bad field")], m2=[_ok("m2")])
    with (
        _client(_config(TWO), ups) as client,
        pytest.raises(palyra.APIStatusError) as info,
    ):
        client.chat(USER, "m1")
    assert info.value.status_code == status
    assert ups.models() == ["m1"]
    assert [a.failure for a in info.value.attempts] == ["bad_request"]


def test_upstream_context_overflow_goes_only_to_a_larger_window() -> None:
    models = [
        {"id": "m1", "provider": "a", "context_window": 8000},
        {"id": "small", "provider": "b", "context_window": 4000},
        {"id": "big", "provider": "b", "context_window": 128000},
    ]
    overflow = _error(400, "This model's maximum context length is 8000 tokens")
    ups = Upstreams(m1=[overflow], small=[_ok("small")], big=[_ok("big")])
    with _client(_config(models), ups) as client:
        reply = client.chat(USER, "m1")
    assert reply.palyra.model == "big"
    assert ups.models() == ["m1", "big"]
    assert client.health()[0].state == "closed"  # the request's fault


def test_estimated_overflow_skips_to_a_larger_window() -> None:
    models = [
        {"id": "m1", "provider": "a", "context_window": 50},
        {"id": "big", "provider": "b", "context_window": 128000},
    ]
    ups = Upstreams(big=[_ok("big")])
    long = [{"role": "user", "content": "word " * 200}]
    with _client(_config(models), ups) as client:
        reply = client.chat(long, "m1")
    assert reply.palyra.model == "big"
    first = reply.palyra.attempts[0]
    assert (first.model, first.outcome, first.error, first.failure) == (
        "m1",
        "skipped",
        "ContextWindowExceededError",
        "context_overflow",
    )
    alone = _config([models[0]], [{"id": "a"}])
    with (
        _client(alone, ups) as client,
        pytest.raises(palyra.ContextWindowExceededError) as info,
    ):
        client.chat(long)
    assert [a.outcome for a in info.value.attempts] == ["skipped"]


def test_refused_credential_fails_over_to_another_provider_and_is_marked() -> None:
    models = [
        {"id": "m1", "provider": "a"},
        {"id": "a2", "provider": "a"},
        {"id": "m2", "provider": "b"},
    ]
    ups = Upstreams(m1=[_error(401, "invalid key"), _ok("m1")], m2=[_ok("m2")])
    with _client(_config(models), ups) as client:
        assert client.chat(USER, "m1").palyra.model == "m2"
        assert ups.models() == ["m1", "m2"]  # no retry, not a2 (same credential)
        problems = {h.model: h.credential_problem for h in client.health()}
        assert problems == {"m1": "auth_invalid", "m2": None}
        client.chat(USER, "m1")  # the key was fixed: success clears the mark
        assert {h.credential_problem for h in client.health()} == {None}


def test_missing_credential_skips_to_another_provider() -> None:
    providers = [
        {"id": "a", "auth_header": "bearer", "api_key_env": "NOPE_KEY"},
        {"id": "b"},
    ]
    ups = Upstreams(m2=[_ok("m2")])
    with _client(_config(TWO, providers), ups) as client:
        reply = client.chat(USER, "m1")
    first = reply.palyra.attempts[0]
    assert (first.outcome, first.error, first.failure) == (
        "skipped",
        "CredentialError",
        "auth_invalid",
    )
    assert reply.palyra.model == "m2"


def test_open_breaker_is_skipped_then_all_open_raises_with_the_earliest_probe() -> None:
    clock = ManualClock()
    providers = [
        {
            "id": "a",
            "max_retries": 0,
            "circuit_breaker_threshold": 1,
            "circuit_breaker_cooldown": 30,
        },
        {
            "id": "b",
            "max_retries": 0,
            "circuit_breaker_threshold": 1,
            "circuit_breaker_cooldown": 10,
        },
    ]
    ups = Upstreams(m1=[_error(500)], m2=[_ok("m2"), _ok("m2"), _error(500)])
    with _client(_config(TWO, providers), ups, clock=clock) as client:
        assert client.chat(USER, "m1").palyra.model == "m2"  # m1's breaker opens
        reply = client.chat(USER, "m1")
        assert reply.palyra.model == "m2"
        assert [(a.model, a.outcome) for a in reply.palyra.attempts] == [
            ("m1", "skipped"),
            ("m2", "success"),
        ]
        assert reply.palyra.attempts[0].error == "NoProviderAvailableError"
        with pytest.raises(palyra.InternalServerError):
            client.chat(USER, "m1")  # m2 fails now: its breaker opens
        clock.now += 5
        sent = len(ups.sent)
        with pytest.raises(palyra.NoProviderAvailableError) as info:
            client.chat(USER, "m1")
    assert len(ups.sent) == sent
    assert info.value.retry_after == pytest.approx(5)  # b half-opens first
    assert "every candidate's circuit breaker is open" in str(info.value)
    assert [a.outcome for a in info.value.attempts] == ["skipped", "skipped"]


def test_retry_after_over_the_cap_fails_over_at_once() -> None:
    waits: list[float] = []
    ups = Upstreams(
        m1=[_error(429, "slow down", **{"retry-after": "120"})], m2=[_ok("m2")]
    )
    clock = ManualClock()
    config = _config(TWO, retry_after_cap=30)
    client = palyra.Palyra(
        config, transport=httpx.MockTransport(ups), sleep=waits.append, clock=clock
    )
    with client:
        assert client.chat(USER, "m1").palyra.model == "m2"
    assert waits == []
    assert ups.models() == ["m1", "m2"]


def test_retry_after_under_the_cap_is_waited() -> None:
    waits: list[float] = []
    ups = Upstreams(m1=[_error(429, "slow", **{"retry-after": "7"}), _ok("m1")])
    client = palyra.Palyra(
        _config(TWO), transport=httpx.MockTransport(ups), sleep=waits.append
    )
    with client:
        assert client.chat(USER, "m1").palyra.model == "m1"
    assert waits == [7.0]


def test_deadline_cuts_attempt_timeouts_and_stops_retries() -> None:
    clock = ManualClock()
    ups = Upstreams(m1=[_error(503, "busy", **{"retry-after": "4"})])
    providers = [{"id": "a", "max_retries": 5, "timeout": 60}]
    config = _config([TWO[0]], providers, deadline=10)
    with (
        _client(config, ups, clock=clock) as client,
        pytest.raises(palyra.InternalServerError) as info,
    ):
        client.chat(USER)
    # Attempts at t=0 and t=4 and t=8; a sleep to t=12 would pass the deadline.
    assert len(ups.sent) == 3
    reads = [timeout["read"] for timeout in ups.timeouts]
    assert reads == [pytest.approx(10), pytest.approx(6), pytest.approx(2)]
    assert len(info.value.attempts) == 3


def test_per_call_deadline_overrides_the_config() -> None:
    clock = ManualClock()
    ups = Upstreams(m1=[_error(503, "busy", **{"retry-after": "1"})])
    providers = [{"id": "a", "max_retries": 9}]
    client = _client(_config([TWO[0]], providers), ups, clock=clock)
    with client, pytest.raises(palyra.InternalServerError):
        client.chat(USER, deadline=2.5)
    assert len(ups.sent) == 3
    with pytest.raises(palyra.InvalidRequestError, match="deadline: must be"):
        client.chat(USER, deadline=0)


def test_deadline_passed_before_a_fallback_raises_a_timeout() -> None:
    clock = ManualClock()

    def slow(request: httpx.Request) -> httpx.Response:
        clock.now += 11  # the first attempt used up the whole deadline
        return _error(503, "busy")

    providers = [{"id": "a", "max_retries": 0}, {"id": "b"}]
    client = palyra.Palyra(
        _config(TWO, providers, deadline=10),
        transport=httpx.MockTransport(slow),
        sleep=clock.sleep,
        clock=clock,
    )
    with client, pytest.raises(palyra.InternalServerError) as info:
        client.chat(USER, "m1")
    assert [a.model for a in info.value.attempts] == ["m1"]  # m2 never tried


def test_hooks_see_the_serving_candidate_and_failures() -> None:
    ups = Upstreams(m1=[_error(503)], m2=[_ok("m2")])
    seen: list[tuple[str, str | None]] = []
    with _client(_config(TWO, failover=True), ups) as client:
        hooks = client._pipeline.hooks
        hooks.after_completion.append(
            lambda ctx, done: seen.append(("done", done.candidate.model.id))
        )
        hooks.after_failure.append(
            lambda ctx, failed: seen.append(
                (
                    "failed" if failed.candidate is None else failed.candidate.model.id,
                    type(failed.error).__name__,
                )
            )
        )
        client.chat(USER, "m1")
        ups.scripts["m2"] = [_error(400)]
        with pytest.raises(palyra.BadRequestError):
            client.chat(USER, "m1")
    assert seen == [
        ("m1", "InternalServerError"),
        ("done", "m2"),
        ("m1", "InternalServerError"),
        ("m2", "BadRequestError"),
        ("failed", "BadRequestError"),
    ]


# -- streams -------------------------------------------------------------------


def test_stream_error_before_the_first_chunk_fails_over() -> None:
    first_event_error = _sse(
        {"error": {"message": "overloaded", "type": "server_error"}}
    )
    ups = Upstreams(
        m1=[first_event_error],
        m2=[_sse(_chunk("hel"), _chunk("lo", "stop"), "[DONE]")],
    )
    providers = [{"id": "a", "max_retries": 0}, {"id": "b"}]
    client = _client(_config(TWO, providers), ups)
    with client, client.stream(USER, "m1") as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "hello"
    assert stream.palyra.model == "m2"
    assert [(a.model, a.outcome) for a in stream.palyra.attempts] == [
        ("m1", "error"),
        ("m2", "success"),
    ]


def test_stream_cut_after_the_first_chunk_raises_and_reaches_the_breaker() -> None:
    cut = httpx.Response(
        200,
        content=f"data: {json.dumps(_chunk('par'))}\n\n".encode(),
        headers={"content-type": "text/event-stream"},
    )
    ups = Upstreams(m1=[cut], m2=[_ok("m2")])
    providers = [{"id": "a", "max_retries": 0}, {"id": "b"}]
    chunks: list[Any] = []
    with _client(_config(TWO, providers), ups) as client:
        stream = client.stream(USER, "m1")
        with pytest.raises(palyra.StreamInterruptedError) as info:
            chunks.extend(stream)
        [health] = client.health()
    assert [c.choices[0].delta.content for c in chunks] == ["par"]
    assert ups.models() == ["m1"]  # too late to fail over
    assert stream.completion is None
    last = info.value.attempts[-1]
    assert (last.outcome, last.error, last.failure) == (
        "error",
        "StreamInterruptedError",
        "connection",
    )
    assert stream.palyra.attempts[-1].outcome == "error"
    assert health.last_error is not None
    assert health.consecutive_failures == 1


@pytest.mark.anyio
async def test_async_failover_matches_sync() -> None:
    ups = Upstreams(m1=[_error(503)], m2=[_ok("m2")])
    clock = ManualClock()

    async def asleep(seconds: float) -> None:
        clock.sleep(seconds)

    client = palyra.Palyra(
        _config(TWO),
        transport=httpx.MockTransport(ups),
        async_sleep=asleep,
        clock=clock,
    )
    async with client:
        reply = await client.achat(USER, "m1")
        ups.scripts["m1"] = [_sse({"error": {"message": "boom"}})]
        ups.scripts["m2"] = [_sse(_chunk("ok", "stop"), "[DONE]")]
        stream = await client.astream(USER, "m1")
        async with stream:
            chunks = [c async for c in stream]
    assert reply.palyra.model == "m2"
    assert [a.outcome for a in reply.palyra.attempts] == ["error"] * 3 + ["success"]
    assert [c.choices[0].delta.content for c in chunks] == ["ok"]
    assert stream.palyra.model == "m2"


def test_secrets_stay_out_of_failover_errors() -> None:
    providers = [
        {"id": "a", "auth_header": "bearer", "api_key_env": "A_KEY", "max_retries": 0},
        {"id": "b", "auth_header": "bearer", "api_key_env": "A_KEY", "max_retries": 0},
    ]
    leak = _error(401, f"Incorrect API key provided: {KEY}")
    ups = Upstreams(m1=[leak], m2=[_error(503, f"token={KEY}")])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("A_KEY", KEY)
        with (
            _client(_config(TWO, providers), ups) as client,
            pytest.raises(palyra.APIError) as info,
        ):
            client.chat(USER, "m1")
        health = client.health()
    dumped = [str(info.value), repr(info.value)]
    dumped += [a.model_dump_json() for a in info.value.attempts]
    dumped += [h.model_dump_json() for h in health]
    assert all(KEY not in text for text in dumped)


def test_a_stream_reports_to_its_breaker_when_it_ends() -> None:
    """Success is reported at the end of a stream, or when the reader stops
    early; a stream that fails mid-answer counts as a failed call."""
    body = _sse(_chunk("a"), _chunk("b", "stop"), "[DONE]")
    ups = Upstreams(m1=[body])
    providers = [{"id": "a", "max_retries": 0, "circuit_breaker_threshold": 2}]
    with _client(_config([TWO[0]], providers), ups) as client:
        stream = client.stream(USER)
        assert client.health()[0].calls == 0  # first chunk read: not over yet
        list(stream)
        assert client.health()[0].calls == 1
        with client.stream(USER) as stream:
            next(iter(stream))  # the reader stops early: not the upstream's fault
        [health] = client.health()
    assert (health.calls, health.success_rate) == (2, 1.0)


def test_streams_failing_mid_answer_open_the_breaker() -> None:
    cut = httpx.Response(
        200,
        content=f"data: {json.dumps(_chunk('par'))}\n\n".encode(),
        headers={"content-type": "text/event-stream"},
    )
    ups = Upstreams(m1=[cut])
    providers = [{"id": "a", "max_retries": 0, "circuit_breaker_threshold": 2}]
    with _client(_config([TWO[0]], providers), ups) as client:
        for _ in range(2):
            with pytest.raises(palyra.StreamInterruptedError):
                list(client.stream(USER))
        with pytest.raises(palyra.NoProviderAvailableError):
            client.stream(USER)
        [health] = client.health()
    assert (health.state, health.calls, health.consecutive_failures) == ("open", 2, 2)
    assert len(ups.sent) == 2


# -- review regressions ----------------------------------------------------------


def test_a_fallback_that_cannot_express_the_request_is_skipped() -> None:
    """The anthropic fallback refuses logprobs while building its request: it
    is skipped (never admitted by its breaker) and the next candidate serves."""
    models = [
        {"id": "m1", "provider": "a", "fallbacks": ["claude", "m2"]},
        {"id": "claude", "provider": "an"},
        {"id": "m2", "provider": "b"},
    ]
    providers = [{"id": "a"}, {"id": "b"}, {"id": "an", "kind": "anthropic"}]
    ups = Upstreams(m1=[_error(503)], m2=[_ok("m2")])
    with _client(_config(models, providers), ups) as client:
        reply = client.chat(USER, "m1", logprobs=True)
        assert {h.model for h in client.health()} == {"m1", "m2"}
    assert reply.palyra.model == "m2"
    skipped = reply.palyra.attempts[3]
    assert (skipped.model, skipped.outcome, skipped.error) == (
        "claude",
        "skipped",
        "UnsupportedCapabilityError",
    )
    with (
        _client(_config(models, providers), ups) as client,
        pytest.raises(palyra.UnsupportedCapabilityError),
    ):
        client.chat(USER, "claude", logprobs=True)  # asked for directly: raised


def test_a_stream_the_parser_cannot_read_is_a_typed_error_and_closed() -> None:
    closed: list[bool] = []

    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"event: message_start\n"
            yield b'data: {"type":"message_start","message":"x"}\n\n'

        def close(self) -> None:
            closed.append(True)

    def handler(request: httpx.Request) -> httpx.Response:
        if "anthropic" in str(request.url):
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, stream=Body())
        return _sse(_chunk("ok", "stop"), "[DONE]")

    models = [{"id": "claude", "provider": "an"}, {"id": "m2", "provider": "b"}]
    providers = [{"id": "an", "kind": "anthropic", "max_retries": 0}, {"id": "b"}]
    client = palyra.Palyra(
        _config(models, providers), transport=httpx.MockTransport(handler)
    )
    with client, client.stream(USER, "claude") as stream:
        assert [c.choices[0].delta.content for c in stream] == ["ok"]
    assert closed == [True]
    first = stream.palyra.attempts[0]
    assert (first.model, first.error) == ("claude", "APIResponseValidationError")


def test_a_timeout_within_the_deadline_is_not_called_a_deadline() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("connect timed out", request=request)

    client = palyra.Palyra(
        _config([TWO[0]], [{"id": "a", "max_retries": 0}], deadline=30),
        transport=httpx.MockTransport(handler),
    )
    with client, pytest.raises(palyra.APITimeoutError) as info:
        client.chat(USER)
    assert "deadline" not in info.value.message


def test_no_candidate_is_admitted_once_the_deadline_has_passed() -> None:
    clock = ManualClock()

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 9.9995  # the primary's answer leaves half a millisecond
        return _error(503)

    providers = [{"id": "a", "max_retries": 0}, {"id": "b"}]
    client = palyra.Palyra(
        _config(TWO, providers, deadline=10),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    with client, pytest.raises(palyra.InternalServerError) as info:
        client.chat(USER, "m1")
    assert [a.model for a in info.value.attempts] == ["m1"]
    assert {h.model for h in client.health()} == {"m1"}  # m2 never admitted


def test_an_unusable_embeddings_answer_keeps_the_attempts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "data": "nope"})

    failed: list[str] = []
    models = [{"id": "e", "provider": "a", "role": "embeddings"}]
    client = palyra.Palyra(
        _config(models, [{"id": "a"}]), transport=httpx.MockTransport(handler)
    )
    client._pipeline.hooks.after_failure.append(
        lambda ctx, f: failed.append(ctx.operation if f.candidate is None else "e")
    )
    with client, pytest.raises(palyra.APIResponseValidationError) as info:
        client.embed("hi")
    [attempt] = info.value.attempts
    assert (attempt.status_code, attempt.outcome) == (200, "error")
    assert failed == ["e", "embeddings"]


# -- how far automatic failover may go ---------------------------------------------


def _priced(model_id: str, provider: str, price: float | None, **extra: Any) -> Any:
    entry: dict[str, Any] = {"id": model_id, "provider": provider, **extra}
    if price is not None:
        entry["pricing"] = {"input": price, "output": price}
    return entry


PRICED = [
    _priced("cheap", "a", 1.0),
    _priced("pricey", "b", 100.0),  # the trial's 100x model
    _priced("close", "b", 1.9),
    _priced("same", "a", 3.0),
]


@pytest.mark.parametrize(
    ("resilience", "expected"),
    [
        pytest.param({}, ["cheap", "close"], id="default-2x"),
        pytest.param(
            {"failover_max_price_ratio": 5}, ["cheap", "close", "same"], id="5x"
        ),
        pytest.param(
            {"failover_max_price_ratio": None},
            ["cheap", "close", "same", "pricey"],
            id="unbounded",
        ),
        pytest.param(
            {"failover": "same_provider", "failover_max_price_ratio": None},
            ["cheap", "same"],
            id="same-provider",
        ),
        pytest.param({"failover": "off"}, ["cheap"], id="off"),
        pytest.param({"failover": False}, ["cheap"], id="false"),
        pytest.param({"failover": True}, ["cheap", "close"], id="true"),
        pytest.param(
            {"failover_max_price_ratio": False},
            ["cheap", "close", "same", "pricey"],
            id="toml-false",
        ),
    ],
)
def test_automatic_failover_is_bounded(
    resilience: dict[str, Any], expected: list[str]
) -> None:
    """Never to a model priced above the ratio (2x by default), nor off the
    provider with same_provider; order among the rest is unchanged."""
    registry = _registry(PRICED, **resilience)
    assert sorted(_ids(registry, "cheap")[1:]) == sorted(expected[1:])
    assert _ids(registry, "cheap")[0] == "cheap"


def test_explicit_fallbacks_cross_the_bound() -> None:
    models = [{**PRICED[0], "fallbacks": ["pricey"]}, *PRICED[1:]]
    assert _ids(_registry(models, failover="same_provider"), "cheap") == [
        "cheap",
        "pricey",
    ]


def test_unpriced_models_are_bounded_by_cost_tier() -> None:
    models = [
        _priced("low", "a", None, cost_tier="low"),
        _priced("premium", "b", None, cost_tier="premium"),
        _priced("standard", "b", None, cost_tier="standard"),
        _priced("low2", "b", None, cost_tier="low"),
        _priced("untiered", "b", None),
    ]
    registry = _registry(models)
    assert _ids(registry, "low") == ["low", "low2", "untiered"]
    assert _ids(registry, "standard")[1:] == ["low", "low2", "untiered"]
    assert "premium" in _ids(_registry(models, failover_max_price_ratio=None), "low")


def test_a_free_model_never_fails_over_to_a_paid_one_by_itself() -> None:
    models = [_priced("local", "a", 0.0), _priced("paid", "b", 0.1)]
    assert _ids(_registry(models), "local") == ["local"]


def test_failover_is_logged_at_warning_once_a_minute_per_pair(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    ups = Upstreams(cheap=[_error(429)], close=[_ok("close")])
    config = _config(PRICED[:3])
    for provider in config["providers"]:
        provider["max_retries"] = 0
    caplog.set_level(logging.WARNING, logger="palyra")
    with _client(config, ups, clock=clock) as client:
        for _ in range(3):
            assert client.chat(USER, "cheap").palyra.model == "close"
            clock.advance(20)
        clock.advance(1)
        client.chat(USER, "cheap")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Three failures in 40 s: one line; the breaker opened on the third, so
    # the fourth call moves for another reason, which gets its own line.
    assert lines == [_moved("rate_limited"), _moved("breaker_open")]


def _moved(why: str) -> str:
    return (
        f"palyra: failing over from a/cheap to b/close after {why} (logged once a"
        " minute per pair; see reply.palyra.attempts)"
    )
