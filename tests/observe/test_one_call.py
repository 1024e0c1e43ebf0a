"""A call the client makes again after a 401 (its OAuth token refreshed) is
one call to its events: one start, one end (or one error), one id; against
a real authorization server and upstream on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import palyra
from tests.auth.authserver import AuthServer
from tests.auth.test_oauth_client import HI, oauth_config, sign_in
from tests.observe.conftest import Otel
from tests.observe.test_events import Events
from tests.upstream import Upstream

pytestmark = pytest.mark.anyio


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def provider(auth: AuthServer) -> Iterator[Upstream]:
    with Upstream(api_key=auth.valid) as server:
        yield server


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_a_call_made_again_after_a_401_is_one_call(
    driver: str, auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    events = Events()
    c = palyra.Palyra(
        oauth_config(auth, provider),
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        on_event=events,
        ledger=False,
    )
    sign_in(c, auth)
    auth.expire_access_tokens()
    c.chat(HI) if driver == "sync" else await c.achat(HI)
    assert auth.token_requests["refresh_token"] == 1  # it was made twice
    # Refused again after its refresh: the 401 is the call's end.
    provider.api_key = lambda token: False
    with pytest.raises(palyra.AuthenticationError):
        c.chat(HI) if driver == "sync" else await c.achat(HI)
    assert c.flush(5)
    calls = events.by_call()
    assert list(calls.values()) == [["start", "end"], ["start", "error"]]
    assert events.seen[-1].error_class == "AuthenticationError"
    assert events.seen[1].attempts == 2  # the refused request, and the one again
    await c.aclose()


async def test_a_401_mid_stream_ends_its_call(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    """The stream is the caller's when its 401 comes: nothing makes the call
    again, so the 401 is its end."""
    import json

    from tests.helpers import chunk_json
    from tests.upstream import Reply

    events = Events()
    c = palyra.Palyra(
        oauth_config(auth, provider),
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        on_event=events,
        ledger=False,
    )
    sign_in(c, auth)
    cut = json.dumps({"error": {"message": "revoked", "type": "authentication_error"}})
    provider.enqueue(Reply(sse=[chunk_json("Hel"), cut]))
    with pytest.raises(palyra.APIError):
        for _ in c.stream(HI):
            pass
    assert c.flush(5)
    assert events.kinds() == ["start", "first_token", "error"]
    await c.aclose()


async def test_a_call_nested_in_another_is_a_call_of_its_own(
    auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    """A call made from within another call (an on_budget_alert callback),
    on another client or the same: its own id, its own start."""
    from tests.helpers import completion_json
    from tests.upstream import Reply

    outer_events, inner_events = Events(), Events()
    other = palyra.Palyra(on_event=inner_events, ledger=False)
    config = oauth_config(auth, provider)
    config["budgets"] = [
        {"id": "cap", "metric": "tokens", "window": "day", "hard_limit": 10**9,
         "alert_at": [0.000000001]}
    ]  # fmt: skip
    c = palyra.Palyra(
        config,
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        on_event=outer_events,
        ledger=palyra.MemoryLedger(),
        on_budget_alert=lambda alert: other.chat(HI),
    )
    sign_in(c, auth)
    provider.enqueue(Reply(json=completion_json("hi")))
    c.chat(HI)
    assert c.flush(5)
    assert other.flush(5)
    assert list(outer_events.by_call().values()) == [["start", "end"]]
    assert list(inner_events.by_call().values()) == [["start", "end"]]
    assert set(outer_events.by_call()).isdisjoint(inner_events.by_call())
    other.close()
    await c.aclose()


async def test_a_call_made_again_is_one_span_with_both_attempts(
    auth: AuthServer, provider: Upstream, tmp_path: Path, otel: Otel
) -> None:
    """The refused request and the one made after the refresh are two
    attempts of one call's span."""
    from opentelemetry.trace import StatusCode

    config = oauth_config(auth, provider)
    config["observability"] = {"otel": True}
    c = palyra.Palyra(
        config, secrets=palyra.MemorySecretStore(), home=tmp_path, ledger=False
    )
    sign_in(c, auth)
    auth.expire_access_tokens()
    await c.achat(HI)
    spans = otel.spans(c)
    (call,) = [s for s in spans if s.name.startswith("chat ")]
    attempts = sorted(
        (s for s in spans if s.parent and s.parent.span_id == call.context.span_id),
        key=lambda s: s.start_time,
    )
    assert [a.attributes["palyra.attempt"] for a in attempts] == [1, 2]
    assert attempts[0].attributes["http.response.status_code"] == 401
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[1].attributes["palyra.attempt.outcome"] == "success"
    assert call.attributes["palyra.outcome"] == "ok"
    assert call.attributes["palyra.attempts"] == 2
    assert call.start_time <= attempts[0].start_time < attempts[1].start_time
    await c.aclose()


async def test_a_stream_made_again_dates_its_first_chunk_from_the_call(
    auth: AuthServer, provider: Upstream, tmp_path: Path, otel: Otel
) -> None:
    """The first chunk came on the second attempt: its event and time to
    first chunk count from the call's start, after that attempt was sent."""
    from tests.helpers import chunk_json
    from tests.upstream import Reply

    config = oauth_config(auth, provider)
    config["observability"] = {"otel": True}
    events = Events()
    c = palyra.Palyra(
        config,
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        ledger=False,
        on_event=events,
    )
    sign_in(c, auth)
    auth.expire_access_tokens()
    chunks = [chunk_json("Hel"), chunk_json("lo"), chunk_json(None, "stop"), "[DONE]"]
    provider.enqueue(Reply(sse=chunks, chunk_delay=0.05))
    with c.stream(HI) as s:
        for _ in s:
            pass
    spans = otel.spans(c)
    (call,) = [s for s in spans if s.name.startswith("chat ")]
    attempts = sorted(
        (s for s in spans if s.parent and s.parent.span_id == call.context.span_id),
        key=lambda s: s.start_time,
    )
    (first,) = call.events
    assert first.timestamp >= attempts[-1].start_time
    ttft = call.attributes["palyra.ttft_ms"]
    assert (first.timestamp - call.start_time) / 1e6 == pytest.approx(ttft, abs=0.01)
    first_token = next(e for e in events.seen if e.kind == "first_token")
    assert first_token.ttft_ms == events.seen[-1].ttft_ms
    assert first_token.ttft_ms == pytest.approx(ttft, abs=0.001)
    assert ttft <= events.seen[-1].latency_ms
    c.close()
