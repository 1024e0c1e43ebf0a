"""palyra's own httpx transports: httpcore's network backends behind the guard.

Loaded when the first network client is made, so a deterministic-only app
never loads httpcore. Every socket read and write (and the TLS handshake) is
cut to the time the send in progress has left (`palyra._core.sending`), so
the attempt's budget bounds the whole wait for a response head, however
slowly an upstream trickles it. Each new connection's host goes through `NetworkGuard`
and the connection is made to an address the guard passed. A refusal and a
failed lookup pass through httpx untouched, for the pipeline to type (a
failed lookup keeps what the resolver raised); a slow lookup becomes
httpcore's connect timeout, like any unreachable host.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from .netguard import LookupTimeout, NetworkGuard
from .pools import AsyncLinearPool, LinearPool
from .sending import current, time_left

__all__ = [
    "AsyncGuardedTransport",
    "GuardedTransport",
    "client_options",
    "proxy_mounts",
]


# The least timeout a socket operation gets once the send's time is up: zero
# would make the socket non-blocking (an error of another kind), and a read
# whose bytes are already there still succeeds.
_LAST_MOMENT = 0.001


def _cut(timeout: float | None) -> float | None:
    """``timeout``, cut to the time the send in progress has left."""
    left = time_left()
    if left is None:
        return timeout
    left = max(left, _LAST_MOMENT)
    return left if timeout is None or left < timeout else timeout


def _timed_out(timeout: float | None, cut: float | None) -> httpcore.ReadTimeout:
    """A read's timeout, saying so when the send's budget, not the per-read
    timeout, is what ran out."""
    scope = current()
    if cut == timeout or scope is None or scope.budget is None:
        return httpcore.ReadTimeout(f"no data for {timeout}s")
    return httpcore.ReadTimeout(f"response not complete after {scope.budget:g}s")


def _is_readable(holder: Any, inner: Any) -> bool:
    """``get_extra_info("is_readable")`` without the backend's cost.

    httpcore's pool asks it of every idle connection each time it places a
    request, so its cost is paid once per pooled connection per request. The
    backends build their whole attribute table to answer (anyio: the peer
    name, the current task); here the socket is registered with a poller once
    (on ``holder``) and polled.
    """
    poller = holder._poller
    if poller is None:
        sock = inner.get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return True  # closed or unknown: the pool must drop it
        if not hasattr(select, "poll"):  # Windows
            return bool(select.select([sock], [], [], 0)[0])
        poller = holder._poller = select.poll()
        poller.register(sock, select.POLLIN)
    # a closed socket polls as POLLNVAL, which reads as readable: dropped
    return bool(poller.poll(0))


class BoundedStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the send's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._poller: Any = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        cut = _cut(timeout)
        try:
            return self._inner.read(max_bytes, cut)
        except httpcore.ReadTimeout:
            raise _timed_out(timeout, cut) from None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _cut(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _cut(timeout))
        return BoundedStream(inner)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _is_readable(self, self._inner)
        return self._inner.get_extra_info(info)


class AsyncBoundedStream(httpcore.AsyncNetworkStream):
    """The async twin of `BoundedStream`."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._poller: Any = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        cut = _cut(timeout)
        try:
            return await self._inner.read(max_bytes, cut)
        except httpcore.ReadTimeout:
            raise _timed_out(timeout, cut) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, _cut(timeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, _cut(timeout))
        return AsyncBoundedStream(inner)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _is_readable(self, self._inner)
        return self._inner.get_extra_info(info)


class BoundedBackend(httpcore.NetworkBackend):
    """A network backend whose connects and streams end by the send's deadline
    (`BoundedStream`): under palyra's guard, and for environment proxies."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _cut(timeout), local_address, socket_options
        )
        return BoundedStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncBoundedBackend(httpcore.AsyncNetworkBackend):
    """The async twin of `BoundedBackend`."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, _cut(timeout), local_address, socket_options
        )
        return AsyncBoundedStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedBackend(BoundedBackend):
    """httpcore's sync backend, connecting only to addresses the guard passed.

    The addresses are tried in turn, sharing the connect timeout (resolution
    included, all of it cut to the send's deadline), so one that is
    black-holed does not use up the whole of it.
    """

    def __init__(
        self, guard: NetworkGuard, inner: httpcore.NetworkBackend | None = None
    ) -> None:
        super().__init__(inner or httpcore.SyncBackend())
        self._guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _cut(timeout)  # the lookup too ends by the send's deadline
        deadline = _deadline(timeout)
        try:
            addresses = self._guard.resolve(host, port, timeout)
        except LookupTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from None
        failure: Exception | None = None
        for index, address in enumerate(addresses):
            share = _share(deadline, len(addresses) - index)
            if share is not None and share <= 0:
                break
            try:
                return super().connect_tcp(
                    address, port, share, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the next address may answer
        raise failure or _out_of_time(host, timeout)


class AsyncGuardedBackend(AsyncBoundedBackend):
    """httpcore's async (anyio) backend, behind the same guard."""

    def __init__(
        self, guard: NetworkGuard, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        super().__init__(inner or httpcore.AnyIOBackend())
        self._guard = guard

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        timeout = _cut(timeout)  # the lookup too ends by the send's deadline
        deadline = _deadline(timeout)
        try:
            addresses = await self._guard.aresolve(host, port, timeout)
        except LookupTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from None
        failure: Exception | None = None
        for index, address in enumerate(addresses):
            share = _share(deadline, len(addresses) - index)
            if share is not None and share <= 0:
                break
            try:
                return await super().connect_tcp(
                    address, port, share, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or _out_of_time(host, timeout)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _share(deadline: float | None, addresses_left: int) -> float | None:
    """An even share of the time left for each address still to try."""
    if deadline is None:
        return None
    return (deadline - time.monotonic()) / addresses_left


def _out_of_time(host: str, timeout: float | None) -> httpcore.ConnectTimeout:
    return httpcore.ConnectTimeout(f"no address of {host!r} answered in {timeout}s")


def _pool_settings(limits: httpx.Limits) -> dict[str, Any]:
    return {
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, with connections opened through the guard.

    httpx takes no network backend (encode/httpx#3180), so the connection pool
    it builds is replaced by an identical one that has the guarded backend;
    requests, responses and error mapping stay httpx's.
    """

    def __init__(self, guard: NetworkGuard, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=True)
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = LinearPool(
            ssl_context=ssl_context,
            network_backend=GuardedBackend(guard),
            **_pool_settings(limits),
        )


class AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    """The async twin of `GuardedTransport`."""

    def __init__(self, guard: NetworkGuard, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=True)
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = AsyncLinearPool(
            ssl_context=ssl_context,
            network_backend=AsyncGuardedBackend(guard),
            **_pool_settings(limits),
        )


def proxy_mounts(
    limits: httpx.Limits, *, asynchronous: bool
) -> dict[str, httpx.BaseTransport | httpx.AsyncBaseTransport | None]:
    """Transports for the proxies the environment names (``HTTPS_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``...), as httpx would mount them itself.

    A proxy resolves and connects to the upstream, so the guard cannot see
    that address; connections to the proxy itself are not checked. Hosts in
    ``NO_PROXY`` (None here) use palyra's guarded transport.
    """
    from httpx._utils import get_environment_proxies  # httpx's reading of the env

    transport = httpx.AsyncHTTPTransport if asynchronous else httpx.HTTPTransport
    return {
        pattern: None if url is None else _bounded(transport(proxy=url, limits=limits))
        for pattern, url in get_environment_proxies().items()
    }


def _bounded(transport: Any) -> Any:
    """A proxy transport whose connections end by the send's deadline too.

    httpx builds the proxy's pool itself (HTTP or SOCKS), so its network
    backend is wrapped in place; a pool without one is left as httpx made it.
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = AsyncBoundedBackend(backend)  # type: ignore[union-attr]
    elif isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = BoundedBackend(backend)  # type: ignore[union-attr]
    return transport


def client_options(
    guard: NetworkGuard, limits: httpx.Limits, *, asynchronous: bool
) -> dict[str, Any]:
    """The keyword arguments of palyra's own `httpx.Client` (``asynchronous``:
    `httpx.AsyncClient`): the guarded transport, and the environment's proxies."""
    transport = AsyncGuardedTransport if asynchronous else GuardedTransport
    return {
        "transport": transport(guard, limits),
        "mounts": proxy_mounts(limits, asynchronous=asynchronous),
        "limits": limits,
    }
