"""The pipeline's seams: where routing, budgets and the ledger join a call.

Four lists of plain callables, run in registration order, the same for sync
and async calls (the pipeline that runs them is written once). The contract,
drawn in ``docs/architecture.md``:

- ``route(ctx)`` runs once, before the candidates are planned; it may return
  a model to serve instead of the requested one (None keeps it).
- ``before_dispatch(ctx, candidate, request)`` runs for each candidate, once
  its request is built and has passed every check, before its breaker admits
  it and the request is sent. Retries of that candidate do not run it again.
  Raising stops the call at once: no retry, no failover. A hook that must
  do I/O there returns a `Work` instead of None: the driver carries it out
  (awaited in an async call) and what it raises stops the call the same way.
- ``after_completion(ctx, completion)`` runs once the call is served: after
  the answer is parsed, or at the end of a stream (finished or closed early).
- ``after_failure(ctx, failed)`` runs for every candidate that reached
  ``before_dispatch`` and did not serve (``failed.candidate`` set), and once
  more when the call as a whole fails (``failed.candidate`` None), whatever
  failed: an upstream, a check after routing, a cancellation.

So every ``before_dispatch`` is matched by exactly one ``after_completion``
or candidate ``after_failure``: a reservation made for a candidate is always
settled or released. An ``after_*`` hook that raises is logged and counted
(``Hooks.errors``); it changes nothing about the call, and the other hooks
still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import NamedTuple

import httpx

from .._providers import Target
from .._registry import ResolvedModel
from .._wire import (
    ChatCompletion,
    CompletionUsage,
    EmbeddingResponse,
    EmbeddingUsage,
    Transcription,
)
from .context import CallContext
from .steps import Work

__all__ = [
    "Candidate",
    "Completion",
    "CompletionHook",
    "DispatchHook",
    "Failed",
    "FailureHook",
    "Hooks",
    "Result",
    "RouteHook",
    "Usage",
]

logger = logging.getLogger("palyra")
Result = ChatCompletion | EmbeddingResponse | Transcription
Usage = CompletionUsage | EmbeddingUsage


class Candidate(NamedTuple):
    """A model about to be tried for a call, with the credential it uses.

    ``position`` is 0 for the requested model and counts up through failover.
    """

    model: ResolvedModel
    target: Target
    position: int


@dataclass(frozen=True, slots=True)
class Completion:
    """How a call was served.

    Attributes:
        candidate: The candidate that served.
        result: The parsed answer; None for a stream closed before its end.
        usage: The answer's token usage (for a stream closed early, estimated
            from what was seen unless the upstream's full report had arrived;
            ``ctx.usage_estimated`` says which), or None when there is none.
        latency_ms: Milliseconds from the start of the call.
    """

    candidate: Candidate
    result: Result | None
    usage: Usage | None
    latency_ms: float

    @property
    def complete(self) -> bool:
        """False for a stream the reader closed before its end."""
        return self.result is not None


@dataclass(frozen=True, slots=True)
class Failed:
    """A candidate that did not serve, or (``candidate`` None) the whole call.

    ``usage`` is, for a stream that broke mid-way, its usage estimated from
    what was seen (unless the upstream's full report had arrived).
    """

    candidate: Candidate | None
    error: BaseException
    usage: Usage | None = None


RouteHook = Callable[[CallContext], ResolvedModel | None]
DispatchHook = Callable[[CallContext, Candidate, httpx.Request], Work | None]
CompletionHook = Callable[[CallContext, Completion], None]
FailureHook = Callable[[CallContext, Failed], None]


class Hooks:
    """The hooks of one client's pipeline (internal: the subsystems' seam)."""

    __slots__ = (
        "after_completion",
        "after_failure",
        "before_dispatch",
        "errors",
        "route",
    )

    def __init__(self) -> None:
        self.errors = 0  # completion and failure hooks that raised
        self.route: list[RouteHook] = []
        self.before_dispatch: list[DispatchHook] = []
        self.after_completion: list[CompletionHook] = []
        self.after_failure: list[FailureHook] = []

    def routed(self, ctx: CallContext) -> None:
        """Run the routing hooks; the last replacement becomes the request."""
        for hook in self.route:
            chosen = hook(ctx)
            if chosen is not None:
                ctx.model = chosen
        ctx.requested = ctx.model

    def dispatching(
        self, ctx: CallContext, candidate: Candidate, request: httpx.Request
    ) -> Generator[Work, object, None]:
        """Run the per-candidate hooks before a request goes out, yielding
        the `Work` a hook returns for the driver to carry out."""
        for hook in self.before_dispatch:
            work = hook(ctx, candidate, request)
            if work is not None:
                yield work

    def completed(
        self,
        ctx: CallContext,
        candidate: Candidate,
        result: Result | None,
        usage: Usage | None,
    ) -> None:
        """Run the completion hooks (a call with none builds no `Completion`)."""
        if self.after_completion:
            completion = Completion(candidate, result, usage, ctx.elapsed_ms())
            for hook in self.after_completion:
                self._guarded("completion", hook, ctx, completion)

    def failed(self, ctx: CallContext, failed: Failed) -> None:
        """Run the failure hooks."""
        for hook in self.after_failure:
            self._guarded("failure", hook, ctx, failed)

    def _guarded(self, seam: str, hook: Callable[..., None], *args: object) -> None:
        # What happened has happened: a completion or failure hook that raises
        # must not change the call's outcome nor keep the others from running.
        try:
            hook(*args)
        except Exception as exc:
            self.errors += 1
            logger.error(
                "palyra: %s hook %s raised %s",
                seam,
                getattr(hook, "__qualname__", type(hook).__name__),
                type(exc).__name__,
            )
