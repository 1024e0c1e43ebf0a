"""The trace context of a ``/v1`` request, end to end: uvicorn on 127.0.0.1
serving the app, the official ``openai`` SDK sending ``traceparent`` and
``tracestate``, a loopback upstream recording what it received. The call's
span is a child of the caller's span, and the upstream request carries the
trace on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import palyra
from palyra.asgi import create_app
from tests.asgi.server import serving
from tests.conftest import FAKE_KEY
from tests.helpers import chunk_json, completion_json, upstream_config
from tests.observe.conftest import Otel
from tests.upstream import Reply, Upstream

HI = [{"role": "user", "content": "say hi"}]
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
INCOMING = f"00-{TRACE_ID}-{SPAN_ID}-01"
STREAM = [chunk_json("Hel"), chunk_json("lo"), chunk_json(None, "stop"), "[DONE]"]


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    with Upstream(api_key=FAKE_KEY) as server:
        yield server


def served(up: Upstream, tmp_path: Path, propagate: str) -> Any:
    config = upstream_config(up.base_url)
    config["observability"] = {"otel": True, "otel_propagate": propagate}
    client = palyra.Palyra(config, home=tmp_path, ledger=palyra.MemoryLedger())
    _, secret = client.tokens.create("sdk")
    return client, secret


def call_span(otel: Otel, client: palyra.Palyra) -> Any:
    (span,) = [s for s in otel.spans(client) if s.name == "chat gpt-4o-mini"]
    return span


@pytest.mark.parametrize("propagate", ["parent", "span"])
def test_traceparent_is_honoured_and_carried_on(
    up: Upstream, otel: Otel, tmp_path: Path, propagate: str
) -> None:
    client, secret = served(up, tmp_path, propagate)
    up.enqueue(Reply(json=completion_json("hi")), Reply(sse=STREAM))
    headers = {"traceparent": INCOMING, "tracestate": "congo=t61rcWkgMzE"}
    with serving(create_app(client)) as base_url:
        sdk = openai.OpenAI(api_key=secret, base_url=base_url, max_retries=0)
        reply = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=HI, extra_headers=headers
        )
        assert reply.choices[0].message.content == "hi"
        chunks = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=HI, stream=True, extra_headers=headers
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    spans = [s for s in otel.spans(client) if s.name == "chat gpt-4o-mini"]
    assert len(spans) == 2
    for span, sent in zip(spans, up.requests, strict=True):
        assert f"{span.context.trace_id:032x}" == TRACE_ID  # the caller's trace
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" == SPAN_ID  # the caller's span
        assert span.parent.is_remote
        if propagate == "parent":
            assert sent.headers["traceparent"] == INCOMING
        else:
            ids = span.context
            assert sent.headers["traceparent"] == (
                f"00-{TRACE_ID}-{ids.span_id:016x}-{ids.trace_flags:02x}"
            )
        assert sent.headers["tracestate"] == "congo=t61rcWkgMzE"
    dumped = " ".join(s.to_json() for s in otel.exporter.get_finished_spans())
    assert secret not in dumped  # the caller's token
    assert FAKE_KEY not in dumped  # the upstream's key
    client.close()


def test_without_traceparent_the_call_is_a_root(
    up: Upstream, otel: Otel, tmp_path: Path
) -> None:
    client, secret = served(up, tmp_path, "parent")
    up.enqueue(Reply(json=completion_json("hi")))
    with serving(create_app(client)) as base_url:
        sdk = openai.OpenAI(api_key=secret, base_url=base_url, max_retries=0)
        sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert call_span(otel, client).parent is None
    assert "traceparent" not in up.requests[-1].headers
    client.close()


def test_a_malformed_traceparent_is_ignored(
    up: Upstream, otel: Otel, tmp_path: Path
) -> None:
    """A bad header is nobody's trace: the call is a root, and answered."""
    client, secret = served(up, tmp_path, "parent")
    up.enqueue(Reply(json=completion_json("hi")))
    with serving(create_app(client)) as base_url:
        sdk = openai.OpenAI(api_key=secret, base_url=base_url, max_retries=0)
        reply = sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            extra_headers={"traceparent": "00-zz-not-a-trace"},
        )
        assert reply.choices[0].message.content == "hi"
    assert call_span(otel, client).parent is None
    assert "traceparent" not in up.requests[-1].headers
    client.close()


def test_the_callers_context_is_left_as_it_was_and_a_bad_propagator_is_harmless(
    tmp_path: Path, otel: Otel
) -> None:
    """Each request's trace context is its own (plain, streamed, refused,
    unreadable), and a propagator of the app's that raises costs the trace,
    never the request."""
    import asyncio

    import httpx
    from opentelemetry import context, propagate
    from opentelemetry.propagators.textmap import TextMapPropagator

    client = palyra.Palyra(
        {"observability": {"otel": True}}, home=tmp_path, ledger=False
    )
    _, secret = client.tokens.create("sdk")
    app = create_app(client)
    hdr = {"authorization": f"Bearer {secret}", "traceparent": INCOMING}
    ask = {"model": "deterministic-chat", "messages": HI}

    async def requests() -> list[int]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://p"
        ) as http:
            before = context.get_current()
            codes = []
            for body in (ask, {**ask, "stream": True}, {"model": "nope"}, None):
                if body is None:
                    r = await http.post(
                        "/v1/chat/completions", headers=hdr, content=b"{not json"
                    )
                else:
                    r = await http.post("/v1/chat/completions", headers=hdr, json=body)
                codes.append(r.status_code)
                assert context.get_current() == before
            return codes

    assert asyncio.run(requests()) == [200, 200, 400, 400]
    calls = [s for s in otel.spans(client) if s.name.startswith("chat ")]
    assert len(calls) == 2
    assert all(f"{s.parent.span_id:016x}" == SPAN_ID for s in calls)

    class Broken(TextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            raise ValueError("a propagator of the app's, broken")

        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            pass

        @property
        def fields(self) -> set[str]:
            return {"traceparent"}

    old = propagate.get_global_textmap()
    propagate.set_global_textmap(Broken())
    try:
        assert asyncio.run(requests())[:2] == [200, 200]
    finally:
        propagate.set_global_textmap(old)
    assert client.observability.stats().otel_failures >= 1
    client.close()
