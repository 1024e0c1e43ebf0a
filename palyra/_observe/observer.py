"""Observability joined to the pipeline: the hooks that note a call's events.

The route hook notes ``start`` (after routing chose the model), the core
tells of a stream's first chunk (``CallContext.saw_first_token``), and the
completion and failure hooks note the end: ``end`` for a call served,
``cancelled`` for a stream closed early or a cancelled call, ``error`` for
a failed one. Each is noted once per call, from the call's own thread or
task, so a call's events are queued in order.

A call that the client makes again after a 401 (its OAuth token refreshed,
``palyra._calls``) is one call: `Observer.outer` spans both flows, so the
second does not start again and the first one's 401 is not told unless it
is the call's end.

With OpenTelemetry on (`Tracing`), the start also starts the call's span,
the dispatch hook carries its trace context upstream, the core tells when
each attempt is sent (``CallContext.sending``), and the events' thread
finishes the spans when it builds the call's last event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from .._core import CallContext, Completion, Failed
from .._exceptions import AuthenticationError
from .._governance import new_record_id
from .dispatcher import EventDispatcher
from .events import CallEvent
from .tracing import Trace, Tracing

__all__ = ["Observer"]

logger = logging.getLogger("palyra")


class _Outer:
    """One call as its caller made it: one or two flows (a 401 made again)."""

    __slots__ = (
        "again",
        "call_id",
        "observer",
        "open",
        "pending",
        "prior_attempts",
        "retry",
        "started",
        "t0",
        "trace",
    )

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.call_id = new_record_id()
        self.started = False
        self.open = True  # until the caller has its answer (or its stream)
        self.retry = False  # the client makes the call again after a 401
        self.again = False  # the second flow runs: its end is the call's
        self.pending: tuple[Any, ...] | None = None  # a first flow's 401
        self.t0 = 0.0  # when the first flow started (perf_counter)
        self.prior_attempts = 0  # requests the first flow sent
        self.trace: Trace | None = None  # the call's span, both flows'

    def made_again(self) -> None:
        """The client makes the call again after its 401: that 401 is not
        the call's end, and the next flow is the same call."""
        if self.pending is not None and self.trace is not None:
            self.trace.earlier.extend(self.pending[2].attempts)  # its attempts
        self.pending, self.retry = None, True


_OUTER: ContextVar[_Outer | None] = ContextVar("palyra_observed_call", default=None)


class _Watch:
    """The observer's state of one call, kept on its context."""

    __slots__ = (
        "call_id",
        "ended",
        "model",
        "observer",
        "outer",
        "prior_attempts",
        "provider",
        "since",
        "trace",
    )

    def __init__(
        self, observer: Observer, call_id: str, outer: _Outer | None = None
    ) -> None:
        self.observer = observer
        self.call_id = call_id
        self.outer = outer
        self.provider = self.model = ""
        self.ended = False
        self.since: float | None = None  # a call made again: its first start
        self.prior_attempts = 0
        self.trace: Trace | None = None

    def first_token(self, ctx: CallContext) -> None:
        """The stream's first chunk (called by the core; never raises)."""
        self.observer.note("first_token", self, ctx, None)

    def sending(self) -> None:
        """An attempt's request goes upstream now (called by the core)."""
        if self.trace is not None:
            self.trace.sent.append(time.perf_counter())


class Observer:
    """The hooks of one client that feed its `EventDispatcher`.

    Args:
        dispatcher: Where the events go.
        capture_content: Put the request's messages and the answer's text
            in the events (off by default: content is never recorded).
        tracing: OpenTelemetry's side, when it is on.
    """

    def __init__(
        self,
        dispatcher: EventDispatcher,
        *,
        capture_content: bool,
        tracing: Tracing | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.capture_content = capture_content
        self.tracing = tracing

    def install(self, hooks: Any) -> None:
        """Join the pipeline: after routing (a start names the routed model)
        and after governance (an end carries usage and cost)."""
        hooks.route.append(self.started)
        if self.tracing is not None and self.tracing.propagates:
            hooks.before_dispatch.append(self.dispatching)
        hooks.after_completion.append(self.completed)
        hooks.after_failure.append(self.failed)

    @contextmanager
    def outer(self) -> Iterator[_Outer]:
        """One call as made by its caller (see the module docstring)."""
        outer = _Outer(self)
        token = _OUTER.set(outer)
        try:
            yield outer
        finally:
            outer.open = False
            _OUTER.reset(token)
            if outer.pending is not None:  # the 401 was the call's end
                self._emit(outer.pending)

    # -- the hooks ---------------------------------------------------------

    def started(self, ctx: CallContext) -> None:
        """The route hook: note ``start`` (returns no model)."""
        outer = _OUTER.get()
        if outer is not None and (outer.observer is not self or not outer.open):
            outer = None  # another client's call, or a finished one
        if outer is None or (outer.started and not (outer.retry and not outer.again)):
            # A call of its own (nested in another's callback, say).
            watch = _Watch(self, new_record_id())
        elif outer.started:  # the call made again after its 401
            outer.again = True
            watch = _Watch(self, outer.call_id, outer)
            watch.since, watch.prior_attempts = outer.t0, outer.prior_attempts
            watch.trace = outer.trace
            ctx.observe = watch
            return None
        else:
            outer.started, outer.t0 = True, ctx.started
            watch = _Watch(self, outer.call_id, outer)
        ctx.observe = watch
        watch.provider, watch.model = ctx.model.provider.id, ctx.model.id
        if self.tracing is not None:
            watch.trace = self._traced(ctx)
            if watch.outer is not None:
                watch.outer.trace = watch.trace
        self.note("start", watch, ctx, self._input(ctx))
        return None

    def dispatching(self, ctx: CallContext, candidate: Any, request: Any) -> None:
        """The dispatch hook: the call's trace context into the request."""
        watch = ctx.observe
        if isinstance(watch, _Watch) and watch.trace is not None:
            assert self.tracing is not None
            try:
                self.tracing.carry(watch.trace, request)
            except Exception:  # never into the call
                self.tracing.failed("carrying the trace context upstream")

    def completed(self, ctx: CallContext, completion: Completion) -> None:
        """The call was served (or its stream closed early)."""
        watch = ctx.observe
        if isinstance(watch, _Watch) and not watch.ended:
            watch.ended = True
            if completion.complete:
                self.note("end", watch, ctx, self._output(completion))
            else:
                self.note("cancelled", watch, ctx, None)  # closed by its reader

    def failed(self, ctx: CallContext, failed: Failed) -> None:
        """The call failed (a candidate's failure is not an event)."""
        if failed.candidate is not None:
            return
        watch = ctx.observe
        if not isinstance(watch, _Watch):  # failed in a route hook before ours
            self.started(ctx)
            watch = ctx.observe
            assert isinstance(watch, _Watch)
        if watch.ended:
            return
        watch.ended = True
        error = failed.error
        kind = "error" if isinstance(error, Exception) else "cancelled"
        arg = self._arg(kind, watch, ctx, type(error).__name__)
        outer = watch.outer
        if (
            isinstance(error, AuthenticationError)
            and outer is not None
            and outer.open
            and not outer.again
        ):
            outer.pending = arg  # the client may make the call again
            outer.prior_attempts = _sent(ctx)
            return
        self._emit(arg)

    # -- parts ---------------------------------------------------------------

    def note(self, kind: str, watch: _Watch, ctx: CallContext, extra: Any) -> None:
        """Queue one event: what changes later is taken now (the moment, the
        latency); the rest the builder reads off the context."""
        self._emit(self._arg(kind, watch, ctx, extra))

    def _arg(
        self, kind: str, watch: _Watch, ctx: CallContext, extra: Any
    ) -> tuple[Any, ...]:
        if kind == "start":
            latency = None
        elif kind == "first_token":
            latency = _ttft(watch, ctx)
        elif watch.since is not None:  # the call's time, both flows
            latency = (time.perf_counter() - watch.since) * 1000
        else:
            latency = ctx.elapsed_ms()
        return (kind, watch, ctx, time.time(), extra, latency)

    def _traced(self, ctx: CallContext) -> Trace | None:
        assert self.tracing is not None
        decision = ctx.routing
        requested = ctx.model.id if decision is None else decision.requested
        try:
            return self.tracing.start(ctx, requested)
        except Exception:  # never into the call: no span for this one
            self.tracing.failed("noting a call's trace")
            return None

    def _emit(self, arg: tuple[Any, ...]) -> None:
        try:
            if not self.dispatcher.emit(_build, arg):
                self._lost(arg)
        except Exception:  # never into the call (nor a stream's parser)
            logger.exception("palyra: noting a call event failed")

    def _lost(self, arg: tuple[Any, ...]) -> None:
        """A dropped note: a call's last one takes its spans with it, but a
        span already started must still end."""
        kind, watch = arg[0], arg[1]
        if kind not in ("start", "first_token") and watch.trace is not None:
            assert self.tracing is not None
            try:
                self.tracing.dropped(watch.trace, kind)
            except Exception:
                self.tracing.failed("ending a dropped call's span")

    def _input(self, ctx: CallContext) -> Any:
        if not self.capture_content:
            return None
        request = ctx.request
        messages = getattr(request, "messages", None)
        if messages is not None:
            return [dict(m) for m in messages]
        value = getattr(request, "inputs", None)  # embeddings
        return list(value) if isinstance(value, list | tuple) else value

    def _output(self, completion: Completion) -> str | None:
        if not self.capture_content:
            return None
        choices = getattr(completion.result, "choices", None)
        if not choices:
            return None
        return getattr(choices[0].message, "content", None)


def _build(arg: tuple[Any, ...]) -> CallEvent:
    """The event a note stands for (on the dispatcher's thread)."""
    kind, watch, ctx, at, extra, latency = arg
    caller = ctx.caller
    decision = ctx.routing
    requested = ctx.requested or ctx.model
    event = CallEvent(
        kind=kind,
        call_id=watch.call_id,
        at=datetime.fromtimestamp(at, UTC),
        operation=ctx.operation,
        stream=bool(getattr(ctx.request, "stream", False)),
        agent=caller.agent,
        session=caller.session,
        principal=caller.principal,
        tags=dict(caller.tags),
        provider=watch.provider if kind == "start" else ctx.model.provider.id,
        model=watch.model if kind == "start" else ctx.model.id,
        requested_model=requested.id if decision is None else decision.requested,
        ttft_ms=None if kind == "start" else _ttft(watch, ctx),
        latency_ms=latency,
        routing=None if decision is None else json.loads(decision.summary()),
    )
    if kind == "start":
        event.input = extra
        return event
    event.attempts = watch.prior_attempts + _sent(ctx)
    if kind != "first_token":
        event.usage, event.cost = ctx.usage, ctx.cost
        if kind == "end":
            event.output = extra
        else:
            event.error_class = extra
    if watch.trace is not None and kind != "first_token":
        _trace(watch, event, ctx, at)
    return event


def _trace(watch: _Watch, event: CallEvent, ctx: CallContext, at: float) -> None:
    """The spans' part of a call's last note (on the events' thread): the
    event is delivered whatever happens here."""
    tracing, trace = watch.observer.tracing, watch.trace
    assert tracing is not None
    assert trace is not None
    try:
        tracing.finish(trace, event, ctx, at)
    except Exception:
        tracing.failed("making a call's spans and metrics")


def _ttft(watch: _Watch, ctx: CallContext) -> float | None:
    """A stream's time to its first chunk, from the call's start: the
    first flow's, for a call made again after a 401."""
    ttft = ctx.first_token_ms
    if ttft is None or watch.since is None:
        return ttft
    return (ctx.started - watch.since) * 1000 + ttft


def _sent(ctx: CallContext) -> int:
    """Requests a flow sent (retries and failovers count; skips do not)."""
    return sum(1 for a in ctx.attempts if a.outcome != "skipped")
