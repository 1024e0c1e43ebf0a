"""The hook contract (docs/architecture.md): the order of events for success,
retry, failover, streams closed early or cut, and a hook that raises, sync and
async, on a real loopback server. Every ``before_dispatch`` is matched by
exactly one ``after_completion`` or candidate ``after_failure``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import palyra
from palyra._core import CallContext, Candidate, Completion, Failed
from tests.helpers import (
    DRIVERS,
    ManualClock,
    chat,
    chunk_json,
    close,
    completion_json,
    drain,
    loopback_transports,
    start_stream,
)
from tests.upstream import Reply, Upstream, error_reply

USER = [{"role": "user", "content": "one two three"}]
Event = tuple[Any, ...]


class Recorder:
    """Registers on every seam and records what each one saw, in order."""

    def __init__(self, client: palyra.Palyra, *, route_to: str | None = None) -> None:
        self.events: list[Event] = []
        self.contexts: list[CallContext] = []
        self.requests: list[httpx.Request] = []
        self._client = client
        self._route_to = route_to
        hooks = client._pipeline.hooks
        hooks.route.append(self.route)
        hooks.before_dispatch.append(self.dispatch)
        hooks.after_completion.append(self.done)
        hooks.after_failure.append(self.failed)

    def route(self, ctx: CallContext) -> Any:
        self.events.append(("route", ctx.model.id))
        self.contexts.append(ctx)
        if self._route_to is None:
            return None
        return self._client._registry.resolve(self._route_to, "chat")

    def dispatch(
        self, ctx: CallContext, candidate: Candidate, request: httpx.Request
    ) -> None:
        self.events.append(("dispatch", candidate.model.id, candidate.position))
        self.requests.append(request)

    def done(self, ctx: CallContext, completion: Completion) -> None:
        usage = getattr(completion.usage, "total_tokens", None)
        self.events.append(
            ("done", completion.candidate.model.id, completion.complete, usage)
        )
        assert completion.latency_ms >= 0

    def failed(self, ctx: CallContext, failed: Failed) -> None:
        who = "call" if failed.candidate is None else failed.candidate.model.id
        self.events.append(("failed", who, type(failed.error).__name__))

    def assert_balanced(self) -> None:
        """Each dispatched candidate ended once: served or failed, never both."""
        dispatched = [e[1] for e in self.events if e[0] == "dispatch"]
        ended = [e[1] for e in self.events if e[0] == "done"] + [
            e[1] for e in self.events if e[0] == "failed" and e[1] != "call"
        ]
        assert sorted(dispatched) == sorted(ended)


def _config(upstream: Upstream) -> dict[str, Any]:
    base = {
        "kind": "openai",
        "base_url": upstream.base_url,
        "auth_header": "none",
        "max_retries": 1,
        "retry_backoff": 0.01,
    }
    return {
        "providers": [{"id": "a", **base}, {"id": "b", **base}],
        "models": [
            {"id": "m1", "provider": "a", "upstream_model": "gpt-4o-mini"},
            {"id": "m2", "provider": "b", "upstream_model": "gpt-4o-mini"},
        ],
    }


@pytest.fixture
async def client(upstream_without_key: Upstream) -> AsyncIterator[palyra.Palyra]:
    clock = ManualClock()
    async with palyra.Palyra(
        _config(upstream_without_key),
        clock=clock,
        sleep=clock.sleep,
        async_sleep=clock.asleep,
        **loopback_transports(),
    ) as client:
        yield client


@pytest.fixture
def upstream_without_key() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server
    assert not server.errors, server.errors


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_success(client: palyra.Palyra, driver: str) -> None:
    seen = Recorder(client)
    await chat(client, driver, USER, "m1")
    assert seen.events == [
        ("route", "m1"),
        ("dispatch", "m1", 0),
        ("done", "m1", True, seen.events[-1][3]),
    ]
    assert isinstance(seen.events[-1][3], int)
    # The hook saw the very payload that was sent: it can price what it reads.
    assert json.loads(seen.requests[0].content)["model"] == "gpt-4o-mini"
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_retry_then_success_dispatches_once(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    upstream_without_key.enqueue(error_reply(503, "busy", type="server_error"))
    seen = Recorder(client)
    reply = await chat(client, driver, USER, "m1")
    assert [e[:2] for e in seen.events] == [
        ("route", "m1"),
        ("dispatch", "m1"),
        ("done", "m1"),
    ]
    assert reply.palyra is not None
    assert [a.outcome for a in reply.palyra.attempts] == ["error", "success"]
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_failover(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    busy = error_reply(500, "down", type="server_error")
    upstream_without_key.enqueue(busy, busy)  # m1 and its one retry
    seen = Recorder(client)
    reply = await chat(client, driver, USER, "m1")
    assert [e[:3] for e in seen.events] == [
        ("route", "m1"),
        ("dispatch", "m1", 0),
        ("failed", "m1", "InternalServerError"),
        ("dispatch", "m2", 1),
        ("done", "m2", True),
    ]
    assert reply.palyra is not None
    assert reply.palyra.model == "m2"
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_call_that_fails_everywhere(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    upstream_without_key.enqueue(*[error_reply(500, "down", type="server_error")] * 4)
    seen = Recorder(client)
    with pytest.raises(palyra.InternalServerError):
        await chat(client, driver, USER, "m1")
    assert seen.events[-3:] == [
        ("dispatch", "m2", 1),
        ("failed", "m2", "InternalServerError"),
        ("failed", "call", "InternalServerError"),
    ]
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_stream_closed_early(client: palyra.Palyra, driver: str) -> None:
    seen = Recorder(client)
    stream = await start_stream(client, driver, USER, "m1")
    assert seen.events == [("route", "m1"), ("dispatch", "m1", 0)]
    await close(stream)
    await close(stream)  # a second close reports nothing more
    # Billed all the same: the prompt and the text seen, estimated.
    [(_, model, complete, usage)] = seen.events[2:]
    assert (model, complete) == ("m1", False)
    assert usage is not None
    assert usage > 0
    assert stream.palyra.usage_estimated is True
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_stream_read_to_the_end(client: palyra.Palyra, driver: str) -> None:
    seen = Recorder(client)
    stream = await start_stream(client, driver, USER, "m1")
    await drain(stream)
    [(_, model, complete, usage)] = seen.events[2:]
    assert (model, complete) == ("m1", True)
    assert stream.usage is not None
    assert usage == stream.usage.total_tokens
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_stream_cut_mid_way(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    events = [chunk_json("one "), chunk_json("two "), chunk_json("three", "stop")]
    upstream_without_key.enqueue(Reply(sse=[*events, "[DONE]"], cut_after=2))
    seen = Recorder(client)
    stream = await start_stream(client, driver, USER, "m1")
    with pytest.raises(palyra.StreamInterruptedError):
        await drain(stream)
    assert seen.events == [
        ("route", "m1"),
        ("dispatch", "m1", 0),
        ("failed", "m1", "StreamInterruptedError"),
        ("failed", "call", "StreamInterruptedError"),
    ]
    seen.assert_balanced()


class Refused(palyra.APIError):
    """What a budget block will look like: a typed error from a hook."""


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_hook_that_raises_stops_the_call(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    seen = Recorder(client)

    def refuse(ctx: CallContext, candidate: Candidate, request: httpx.Request) -> None:
        raise Refused("over budget", provider=candidate.model.provider.id)

    client._pipeline.hooks.before_dispatch.append(refuse)
    with pytest.raises(Refused) as info:
        await chat(client, driver, USER, "m1")
    assert seen.events == [
        ("route", "m1"),
        ("dispatch", "m1", 0),
        ("failed", "m1", "Refused"),
        ("failed", "call", "Refused"),
    ]
    assert upstream_without_key.requests == []  # no retry, no failover
    [attempt] = info.value.attempts
    assert (attempt.model, attempt.outcome, attempt.error) == (
        "m1",
        "skipped",
        "Refused",
    )
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_route_replaces_the_requested_model(
    client: palyra.Palyra, driver: str
) -> None:
    seen = Recorder(client, route_to="m2")
    reply = await chat(client, driver, USER, "m1")
    assert [e[:2] for e in seen.events] == [
        ("route", "m1"),
        ("dispatch", "m2"),
        ("done", "m2"),
    ]
    assert reply.palyra is not None
    assert (reply.palyra.requested_model, reply.palyra.model) == ("m2", "m2")
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_hooks_see_who_the_call_is_for(
    client: palyra.Palyra, driver: str
) -> None:
    seen = Recorder(client)
    bound = client.bind(agent="support", tags={"team": "billing"})
    await chat(bound, driver, USER, "m1", session="s-1")
    caller = seen.contexts[0].caller
    assert (caller.agent, caller.session, dict(caller.tags)) == (
        "support",
        "s-1",
        {"team": "billing"},
    )
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_refused_payload_reaches_no_dispatch_hook(driver: str) -> None:
    """Anthropic takes no file parts: the adapter refuses the request before
    any before_dispatch hook, so no reservation is ever made for it; the call
    still counts as failed."""
    config = {
        "providers": [{"id": "ant", "kind": "anthropic", "auth_header": "none"}],
        "models": [{"id": "claude", "provider": "ant"}],
    }
    client = palyra.Palyra(config, transport=httpx.MockTransport(_never))
    seen = Recorder(client)
    message = {"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}
    with pytest.raises(palyra.UnsupportedCapabilityError, match="file"):
        await chat(client, driver, [message])
    assert seen.events == [
        ("route", "claude"),
        ("failed", "call", "UnsupportedCapabilityError"),
    ]
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_an_open_breaker_ends_a_dispatched_candidate(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    """A candidate its breaker refuses after the hooks ran still gets its end."""
    health = client._pipeline.health
    for _ in range(3):
        key = ("a", "m1")
        health.record(key, False, 1.0, admission=health.admit(key, 3, 30.0))
    seen = Recorder(client)
    reply = await chat(client, driver, USER, "m1")
    assert [e[:3] for e in seen.events] == [
        ("route", "m1"),
        ("dispatch", "m1", 0),
        ("failed", "m1", "NoProviderAvailableError"),
        ("dispatch", "m2", 1),
        ("done", "m2", True),
    ]
    assert reply.palyra is not None
    assert reply.palyra.model == "m2"
    seen.assert_balanced()


def _never(request: httpx.Request) -> httpx.Response:
    raise AssertionError("nothing may be sent")


# -- every path ends what it announced ------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_an_unusable_answer_fails_the_candidate_and_the_call(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    """An answer that is not a completion is the candidate's failure (not
    retried: the same request would get the same answer); the next candidate
    is tried, and when it fails too, so does the call."""
    for _ in range(2):
        upstream_without_key.enqueue(Reply(json={"not": "a completion"}))
    seen = Recorder(client)
    with pytest.raises(palyra.APIResponseValidationError):
        await chat(client, driver, USER, "m1")
    assert seen.events[1:] == [
        ("dispatch", "m1", 0),
        ("failed", "m1", "APIResponseValidationError"),
        ("dispatch", "m2", 1),
        ("failed", "m2", "APIResponseValidationError"),
        ("failed", "call", "APIResponseValidationError"),
    ]
    assert len(upstream_without_key.requests) == 2
    assert [h.consecutive_failures for h in client.health()] == [1, 1]
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_json_mode_failing_at_the_end_of_a_stream(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    events = [chunk_json("not "), chunk_json("json", "stop"), "[DONE]"]
    upstream_without_key.enqueue(Reply(sse=events))
    seen = Recorder(client)
    stream = await start_stream(
        client, driver, USER, "m1", response_format={"type": "json_object"}
    )
    with pytest.raises(palyra.APIResponseValidationError, match="not valid JSON"):
        await drain(stream)
    assert seen.events[2:] == [
        ("failed", "m1", "APIResponseValidationError"),
        ("failed", "call", "APIResponseValidationError"),
    ]
    seen.assert_balanced()
    # The model's answer was at fault, not the upstream: a success for health.
    assert [h.success_rate for h in client.health()] == [1.0]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_hooks_that_raise_after_the_fact_change_nothing(
    client: palyra.Palyra,
    upstream_without_key: Upstream,
    driver: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(ctx: CallContext, event: Any) -> None:
        raise RuntimeError("a bug in a hook")

    hooks = client._pipeline.hooks
    hooks.after_completion.append(broken)
    hooks.after_failure.append(broken)
    seen = Recorder(client)  # registered after the broken ones: still runs
    busy = error_reply(500, "down", type="server_error")
    upstream_without_key.enqueue(busy, busy)
    reply = await chat(client, driver, USER, "m1")  # m1 fails, m2 serves
    assert reply.palyra is not None
    assert reply.palyra.model == "m2"
    assert [e[0] for e in seen.events] == [
        "route",
        "dispatch",
        "failed",
        "dispatch",
        "done",
    ]
    assert hooks.errors == 2
    assert "failure hook" in caplog.text
    assert "completion hook" in caplog.text
    assert "a bug in a hook" not in caplog.text  # the class is logged, not the text
    seen.assert_balanced()


@pytest.mark.anyio
async def test_a_cancelled_call_still_ends_its_candidate(
    client: palyra.Palyra, upstream_without_key: Upstream
) -> None:
    import asyncio

    upstream_without_key.enqueue(Reply(json=completion_json("late"), delay=2.0))
    seen = Recorder(client)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.achat(USER, "m1"), 0.2)
    assert seen.events == [
        ("route", "m1"),
        ("dispatch", "m1", 0),
        ("failed", "m1", "CancelledError"),
        ("failed", "call", "CancelledError"),
    ]
    seen.assert_balanced()


def test_an_interrupted_sync_call_still_ends_its_candidate(
    upstream_without_key: Upstream,
) -> None:
    """Ctrl-C during a retry's sleep: the candidate and the call end."""

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    client = palyra.Palyra(
        _config(upstream_without_key), sleep=interrupted, **loopback_transports()
    )
    upstream_without_key.enqueue(error_reply(503, "busy", type="server_error"))
    seen = Recorder(client)
    with client, pytest.raises(KeyboardInterrupt):
        client.chat(USER, "m1")
    assert seen.events[1:] == [
        ("dispatch", "m1", 0),
        ("failed", "m1", "KeyboardInterrupt"),
        ("failed", "call", "KeyboardInterrupt"),
    ]
    seen.assert_balanced()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_provider_level_calls_run_no_hooks(
    client: palyra.Palyra, driver: str
) -> None:
    seen = Recorder(client)
    if driver == "sync":
        client.provider_models("a")
        client.count_tokens(USER, "m1")
    else:
        await client.aprovider_models("a")
        await client.acount_tokens(USER, "m1")
    assert seen.events == []


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_hook_returns_work_the_driver_does_sync_or_awaited(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    """A hook's I/O (a shared budget's reservation) is done by the driver:
    ``run`` in a sync call, ``arun`` awaited in an async one, before the
    request is sent."""
    from palyra._core import Work

    done: list[str] = []

    def sync() -> object:
        done.append(f"run sent={len(upstream_without_key.requests)}")
        return None

    async def asynchronous() -> object:
        done.append(f"arun sent={len(upstream_without_key.requests)}")
        return None

    def hook(ctx: CallContext, candidate: Candidate, request: httpx.Request) -> Work:
        return Work(sync, asynchronous)

    client._pipeline.hooks.before_dispatch.append(hook)
    await chat(client, driver, USER, "m1")
    expected = "run" if driver == "sync" else "arun"
    assert done == [f"{expected} sent=0"]
    assert len(upstream_without_key.requests) == 1


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_work_that_raises_stops_the_call_like_a_hook(
    client: palyra.Palyra, upstream_without_key: Upstream, driver: str
) -> None:
    from palyra._core import Work

    seen = Recorder(client)

    def refuse() -> object:
        raise Refused("over budget (shared)", provider="p")

    async def arefuse() -> object:
        return refuse()

    def hook(ctx: CallContext, candidate: Candidate, request: httpx.Request) -> Work:
        return Work(refuse, arefuse)

    client._pipeline.hooks.before_dispatch.append(hook)
    with pytest.raises(Refused):
        await chat(client, driver, USER, "m1")
    assert seen.events == [
        ("route", "m1"),
        ("dispatch", "m1", 0),
        ("failed", "m1", "Refused"),
        ("failed", "call", "Refused"),
    ]
    assert upstream_without_key.requests == []
    seen.assert_balanced()
