"""The steps a flow yields to a driver, and what the driver answers.

A flow (one call, written once in `palyra._core.pipeline`) is a generator: it
yields a `ProviderCall`, a `Sleep`, a `Prime` or a `Work` and is sent back an
`Outcome` (None after a sleep; the work's value after a `Work`). The drivers
in `palyra._core.drivers` carry the steps out, with httpx, sync or async;
nothing here decides anything. Steps are
named tuples: made on every call, they must cost next to nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import NamedTuple, Protocol, TypeVar

import httpx

from .._exceptions import APIError
from .._providers import InProcessTransport, Target

__all__ = [
    "Flow",
    "Outcome",
    "Prime",
    "PrimeSession",
    "ProviderCall",
    "Sleep",
    "Work",
    "attempt_budget",
]

T = TypeVar("T")


class ProviderCall(NamedTuple):
    """What the pipeline asks a driver to send.

    ``local`` is the adapter's in-process upstream (the deterministic
    provider's), which the driver serves without a socket; None means the
    network.
    """

    target: Target
    request: httpx.Request
    stream: bool
    local: InProcessTransport | None = None

    @property
    def budget(self) -> float:
        """Seconds the whole attempt may take (its read timeout covers one read)."""
        return attempt_budget(self.request)


class Outcome(NamedTuple):
    """What the driver got back: a response (body read unless streaming) or the
    exception that stopped it."""

    response: httpx.Response | None
    error: Exception | None
    latency_ms: float


class Sleep(NamedTuple):
    """What the pipeline asks a driver to do between two attempts."""

    seconds: float


class PrimeSession(Protocol):
    """What a driver needs of a stream session to prime it."""

    def prime(self, data: bytes) -> bool:
        """Take one read; True once a chunk is pending for the caller."""

    def prime_end(self) -> None:
        """The body ended while priming (raises when it held no chunk)."""

    def attach(self, source: Iterator[bytes] | AsyncIterator[bytes]) -> None:
        """Keep the byte iterator the stream goes on reading after priming."""

    def interrupted(self, exc: Exception) -> APIError:
        """The typed error for a transport failure while reading."""

    def malformed(self, exc: Exception) -> APIError:
        """The typed error for a stream the parser could not make sense of."""

    def deadline_passed(self) -> APIError:
        """The typed error for a first chunk the call's deadline cut off."""


class Prime(NamedTuple):
    """What the pipeline asks a driver to do with an opened stream: read until
    the session holds its first chunk, so that a failure before anything
    reached the caller can still be retried or failed over. The driver answers
    with an `Outcome` whose error is the (typed) failure, if any."""

    session: PrimeSession
    response: httpx.Response
    within: float | None = None  # seconds the first chunk may take, if cut


class Work(NamedTuple):
    """I/O a subsystem must do before a candidate is sent (a shared budget's
    reservation on Redis): done by the driver, ``run()`` in a sync call and
    ``arun()`` awaited in an async one, so an async call never blocks its
    loop. Its value is sent back to the flow; what it raises is thrown in."""

    run: Callable[[], object]
    arun: Callable[[], Awaitable[object]]


# A `Work`'s value goes back to the hook's own generator (typed there, see
# `Hooks.dispatching`); every other step is answered with an Outcome or None.
Flow = Generator[ProviderCall | Sleep | Prime | Work, Outcome | None, T]


def attempt_budget(request: httpx.Request) -> float:
    """Seconds one attempt may take: the adapter puts it in the read timeout."""
    return float(request.extensions["timeout"]["read"])
