"""The drivers: the only code that does a call's I/O, sync and async.

`SyncDriver.run` and `AsyncDriver.run` walk a flow from the pipeline: each
`ProviderCall` goes to httpx (body read within the attempt's deadline), each
`Prime` reads a new stream up to its first chunk, each `Sleep` sleeps, each
`Work` runs (awaited by the async driver). They
own the HTTP clients: palyra's guarded network client, made on first use and
reused for connection pooling, and one client per in-process upstream.
Nothing here decides what to do with a result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import httpx

from .._exceptions import APIError, BlockedAddressError, ClientClosedError
from .._providers import InProcessTransport
from .netguard import BlockedAddress, LookupFailed, NetworkGuard
from .reading import BodyReader, aprime, check_size, outcome, prime
from .sending import enter, install_scrubber, leave
from .steps import Flow, Outcome, Prime, ProviderCall, Work

__all__ = ["LIMITS", "AsyncDriver", "Deferred", "SyncDriver", "running_loop"]

T = TypeVar("T")
logger = logging.getLogger("palyra")

# httpx's default keeps 20 of its 100 connections alive. httpcore 1.0 closes
# "surplus idle" connections by counting every connection, idle or not, and can
# close one just handed to another thread (encode/httpcore#1110): keeping them
# all alive avoids that path, and busy apps reuse connections instead of
# reconnecting.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)
# What a send can fail with before a response: httpx's errors, and the guard's
# refusals and failed lookups (not httpx errors, so they arrive untouched). A
# body past its size cap fails as an APIError (`BodyReader`).
_SEND_ERRORS = (httpx.HTTPError, BlockedAddress, LookupFailed)


class Deferred:
    """Work put off from finalizers, done at the start of the next call.

    A stream the garbage collector drops must give its connection back and
    report its end, but a finalizer may run while this very thread holds any
    lock (httpcore's pool, a health window): the work waits here instead.
    """

    __slots__ = ("_actions",)

    def __init__(self) -> None:
        self._actions: deque[Callable[[], object]] = deque()

    def __call__(self, action: Callable[[], object]) -> None:
        """Put ``action`` off (an atomic append: safe anywhere)."""
        self._actions.append(action)

    def __bool__(self) -> bool:
        return bool(self._actions)

    def settle(self) -> None:
        """Do what was put off."""
        while self._actions:
            try:
                action = self._actions.popleft()
            except IndexError:  # another thread took the last one
                return
            try:
                action()
            except Exception as exc:
                logger.warning(
                    "palyra: closing a dropped stream failed (%s)", type(exc).__name__
                )


class _Driver:
    """What both drivers share: the guard, the closed flag, the local clients,
    and the work put off from finalizers."""

    def __init__(self, transport: Any, guard: NetworkGuard, later: Deferred) -> None:
        self._transport = transport  # the caller's own, or None for palyra's
        self._guard = guard
        self.later = later
        self._lock = threading.Lock()
        self._closed = False
        self._local: dict[int, Any] = {}  # id(InProcessTransport) -> client

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(
                "this Palyra client is closed; build a new one to make more calls"
            )

    def _local_client(self, transport: InProcessTransport, factory: Any) -> Any:
        # In-process upstreams never touch a socket: their clients need no
        # closing and outlive any event loop.
        client = self._local.get(id(transport))
        if client is None:
            with self._lock:
                client = self._local.setdefault(
                    id(transport), factory(transport=transport)
                )
        return client


class SyncDriver(_Driver):
    """Runs flows with `httpx.Client`.

    Args:
        transport: The caller's httpx transport, or None for palyra's own
            (guarded, honouring the environment's proxies).
        guard: The network guard of palyra's own transport.
        sleep: Waits between retries (tests pass a recorder).
        later: Work put off from finalizers (shared with the async driver).
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None,
        guard: NetworkGuard,
        sleep: Callable[[float], None],
        later: Deferred,
    ) -> None:
        super().__init__(transport, guard, later)
        self._sleep = sleep
        self._network: httpx.Client | None = None

    def run(self, flow: Flow[T]) -> T:
        """Carry out every step of ``flow``; its return value is the result."""
        if self.later:
            self.later.settle()
        if self._closed:
            flow.close()
            self._check_open()
        try:
            step = next(flow)
            while True:
                try:
                    if isinstance(step, ProviderCall):
                        answer: Any = self._send(step)
                    elif isinstance(step, Prime):
                        answer = prime(step)
                    elif isinstance(step, Work):
                        answer = step.run()
                    else:
                        self._sleep(step.seconds)
                        answer = None
                except BaseException as exc:
                    # Interrupted (or a bug here): the flow hears of it, so each
                    # candidate it announced to the hooks still ends.
                    step = flow.throw(exc)
                else:
                    step = flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _send(self, call: ProviderCall) -> Outcome:
        client = self._client(call)
        started = time.perf_counter()
        # The send's scope for the network layer (`palyra._core.sending`): the
        # attempt's budget bounds the response head and body, and its key is
        # kept out of httpx's logs. In-process upstreams need neither.
        scope = (
            None if call.local is not None else enter(call.budget, call.target.secrets)
        )
        try:
            response = client.send(call.request, stream=True)
            if _wants_body(call, response):
                response = _read(call, response, started)
            elif not call.stream:
                # In-memory responses (mocks, the deterministic upstream)
                # arrive read: their size is checked after the fact.
                check_size(call, response)
        except (*_SEND_ERRORS, APIError) as exc:
            return outcome(call, None, exc, started)
        finally:
            if scope is not None:
                leave(scope)
        return outcome(call, response, None, started)

    def exchange(
        self, request: httpx.Request, secrets: tuple[str, ...], budget: float
    ) -> httpx.Response:
        """Send a request that is not a provider call (auth's validation,
        token and revocation requests) on the network client: the guard
        applies, no redirect is followed, and the body is read whole, at most
        `EXCHANGE_LIMIT` bytes, within ``budget`` seconds. Transport errors
        raise; ``secrets`` stay out of httpx's logs."""
        if self.later:
            self.later.settle()
        client = self._network_client()
        _bound(request, budget)
        scope = enter(budget, secrets)
        try:
            response = client.send(request, stream=True)
            try:
                body = _capped(response.iter_bytes())
            finally:
                response.close()
        except BlockedAddress as exc:
            raise _blocked(exc) from None
        finally:
            leave(scope)
        return _whole(response, request, body)

    def _client(self, call: ProviderCall) -> httpx.Client:
        if call.local is not None:
            return self._local_client(call.local, httpx.Client)  # type: ignore[no-any-return]
        return self._network_client()

    def _network_client(self) -> httpx.Client:
        client = self._network
        if client is None:
            with self._lock:
                self._check_open()
                if self._network is None:
                    self._network = httpx.Client(
                        **_client_options(self._transport, self._guard, False)
                    )
                client = self._network
        return client

    def close(self) -> None:
        """Close the network connections; later calls raise."""
        self.later.settle()
        with self._lock:
            client, self._network = self._network, None
            self._closed = True
        if client is not None:
            client.close()


class AsyncDriver(_Driver):
    """Runs flows with `httpx.AsyncClient`, one per event loop.

    Args:
        transport: The caller's async httpx transport, or None for palyra's.
        guard: The network guard of palyra's own transport.
        sleep: Waits between retries (default `asyncio.sleep`).
        later: Work put off from finalizers (shared with the sync driver).
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None,
        guard: NetworkGuard,
        sleep: Callable[[float], Awaitable[None]] | None,
        later: Deferred,
    ) -> None:
        super().__init__(transport, guard, later)
        self._sleep = sleep or asyncio_sleep
        self._network: httpx.AsyncClient | None = None
        self._loop: object = None

    async def run(self, flow: Flow[T]) -> T:
        """Carry out every step of ``flow``; its return value is the result."""
        if self.later:
            self.later.settle()
        if self._closed:
            flow.close()
            self._check_open()
        try:
            step = next(flow)
            while True:
                try:
                    if isinstance(step, ProviderCall):
                        answer: Any = await self._send(step)
                    elif isinstance(step, Prime):
                        answer = await aprime(step)
                    elif isinstance(step, Work):
                        answer = await step.arun()
                    else:
                        await self._sleep(step.seconds)
                        answer = None
                except BaseException as exc:
                    # Cancelled, timed out by the caller, or interrupted: the
                    # flow hears of it, so each announced candidate still ends.
                    step = flow.throw(exc)
                else:
                    step = flow.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _send(self, call: ProviderCall) -> Outcome:
        client = self._client(call)
        started = time.perf_counter()
        scope = (
            None if call.local is not None else enter(call.budget, call.target.secrets)
        )
        try:
            response = await client.send(call.request, stream=True)
            if _wants_body(call, response):
                response = await _aread(call, response, started)
            elif not call.stream:
                check_size(call, response)
        except (*_SEND_ERRORS, APIError) as exc:
            return outcome(call, None, exc, started)
        finally:
            if scope is not None:
                leave(scope)
        return outcome(call, response, None, started)

    async def exchange(
        self, request: httpx.Request, secrets: tuple[str, ...], budget: float
    ) -> httpx.Response:
        """Async `SyncDriver.exchange`."""
        if self.later:
            self.later.settle()
        client = self._network_client()
        _bound(request, budget)
        scope = enter(budget, secrets)
        try:
            response = await client.send(request, stream=True)
            try:
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > EXCHANGE_LIMIT:
                        raise _too_large()
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except BlockedAddress as exc:
            raise _blocked(exc) from None
        finally:
            leave(scope)
        return _whole(response, request, b"".join(chunks))

    def _client(self, call: ProviderCall) -> httpx.AsyncClient:
        if call.local is not None:
            return self._local_client(call.local, httpx.AsyncClient)  # type: ignore[no-any-return]
        return self._network_client()

    def _network_client(self) -> httpx.AsyncClient:
        loop = running_loop()
        client = self._network
        if client is None or self._loop is not loop:
            with self._lock:
                self._check_open()
                if self._network is None or self._loop is not loop:
                    # Connections belong to the loop that opened them; a client
                    # used from a new loop (a second asyncio.run) needs new ones.
                    self._network = httpx.AsyncClient(
                        **_client_options(self._transport, self._guard, True)
                    )
                    self._loop = loop
                client = self._network
        return client

    async def aclose(self) -> None:
        """Close the network connections of the running loop; later calls raise."""
        self.later.settle()
        with self._lock:
            client, self._network = self._network, None
            loop, self._loop = self._loop, None
            self._closed = True
        # Connections opened by an event loop that has since ended cannot be
        # closed from another one; they went away with their loop.
        if client is not None and loop is running_loop():
            await client.aclose()


def _client_options(transport: Any, guard: NetworkGuard, asynchronous: bool) -> Any:
    """The keyword arguments of a network client: the caller's transport, or
    palyra's own behind the guard (loaded on first use: it imports httpcore)."""
    install_scrubber()  # httpcore may log what the upstream sends
    if transport is not None:
        return {"transport": transport, "limits": LIMITS}
    from .connect import client_options

    return client_options(guard, LIMITS, asynchronous=asynchronous)


def _read(
    call: ProviderCall, response: httpx.Response, started: float
) -> httpx.Response:
    """The response with its body read (within the attempt's time and caps)."""
    reader = BodyReader(call, response, started)
    parts = response.iter_bytes() if reader.decoded else response.iter_raw()
    try:
        for part in parts:
            if reader.add(part):
                break
    except httpx.DecodingError:
        raise reader.undecodable() from None
    finally:
        response.close()
    return reader.response()


async def _aread(
    call: ProviderCall, response: httpx.Response, started: float
) -> httpx.Response:
    """Async `_read`."""
    reader = BodyReader(call, response, started)
    parts = response.aiter_bytes() if reader.decoded else response.aiter_raw()
    try:
        async for part in parts:
            if reader.add(part):
                break
    except httpx.DecodingError:
        raise reader.undecodable() from None
    finally:
        await response.aclose()
    return reader.response()


EXCHANGE_LIMIT = 1 << 20
"""Bytes an `exchange` reads at most: token and validation answers are small."""


def _bound(request: httpx.Request, budget: float) -> None:
    request.extensions["timeout"] = dict.fromkeys(
        ("connect", "read", "write", "pool"), budget
    )


def _blocked(exc: BlockedAddress) -> BlockedAddressError:
    return BlockedAddressError(
        f"refused to connect to {exc.host!r}: it {exc.reason}",
        host=exc.host,
        reason=exc.reason,
    )


def _too_large() -> httpx.ReadError:
    # A transport error to the flow that sent it: it gets no usable answer.
    return httpx.ReadError(f"answer larger than {EXCHANGE_LIMIT} bytes")


def _capped(chunks: Iterable[bytes]) -> bytes:
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > EXCHANGE_LIMIT:
            raise _too_large()
        parts.append(chunk)
    return b"".join(parts)


def _whole(
    response: httpx.Response, request: httpx.Request, body: bytes
) -> httpx.Response:
    """A read response: the body is decoded already, so the headers that
    described its encoding go."""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower()
        not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=request
    )


def _wants_body(call: ProviderCall, response: httpx.Response) -> bool:
    # A stream's body is the session's to read, unless it is an error.
    wanted = not call.stream or response.status_code >= 300
    return wanted and not response.is_stream_consumed


async def asyncio_sleep(seconds: float) -> None:
    """`asyncio.sleep`, imported when first awaited."""
    import asyncio  # loaded by whoever runs the loop; see running_loop

    await asyncio.sleep(seconds)


def running_loop() -> object:
    """The running event loop.

    asyncio is loaded by whoever runs the loop; importing it here up front
    would cost every sync-only user import time.
    """
    import asyncio

    return asyncio.get_running_loop()
