"""The network guard: connections to upstreams must not reach private networks.

It runs when a connection is opened, inside palyra's own transports, through
httpcore's network-backend seam (sync and async). Each new connection's host
is resolved once, every address is checked, and the connection goes to an
address that passed. No name is resolved twice, so a DNS server that answers
a public address first and a private one later (rebinding) is refused on the
connection that sees the private one. Nothing is resolved when a client is
built: an unreachable resolver is an ordinary connection error at call time.

Config validation checks literal addresses without any I/O; both judge an
address with `palyra._addresses.address_problem`. A provider with
``allow_private_base_url`` is trusted: its addresses are not judged. A
``localhost`` name must resolve to loopback only, trusted or not: it is what
lets a base URL use plain http. A transport passed to `Palyra` replaces
palyra's and the guard with it.

This module decides; `palyra._core.connect` (httpcore's backends and httpx's
transports, loaded with the first network client) connects.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from .._addresses import address_problem as judge
from .._addresses import is_localhost_name, is_loopback
from .._config import ProviderConfig
from .._utils import excerpt

__all__ = [
    "BlockedAddress",
    "LookupFailed",
    "LookupTimeout",
    "NetworkGuard",
    "Resolver",
    "address_problem",
    "localhost_problem",
    "system_resolver",
]

Resolver = Callable[[str, int], list[str]]
"""Takes a host and port; returns the IP address strings the host resolves to."""
Found = list[str] | Exception  # a lookup's answer, or what the resolver raised

_DEFAULT_PORTS = {"https": 443, "http": 80}
_RESOLVE_TIMEOUT = 5.0  # when httpcore gives no connect timeout
# A lookup still running after this long is abandoned and the next connection
# starts another: a resolver that hangs costs one thread per host this often.
_STALE_LOOKUP = 30.0


class BlockedAddress(Exception):
    """A connection refused by the guard.

    Raised inside httpcore's connect; it is not an httpcore error, so httpx
    passes it through unchanged and the pipeline turns it into the typed
    `palyra.BlockedAddressError` (never retried).
    """

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"{host}:{port} {reason}")
        self.host = host
        self.port = port
        self.reason = reason


class LookupFailed(OSError):
    """A host could not be resolved: an ordinary connection error.

    Raised inside httpcore's connect and passed through httpx untouched, like
    `BlockedAddress`; the pipeline types it as `palyra.APIConnectionError`
    (retried, counted by the breaker) with ``error``, what the resolver
    raised, as its ``__cause__``. httpcore re-raises connect errors ``from
    None``, so the resolver's exception travels as an attribute.
    """

    def __init__(self, message: str, error: Exception | None = None) -> None:
        super().__init__(message)
        self.error = error


class LookupTimeout(TimeoutError):
    """A host took longer to resolve than the connection may take."""


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver (`socket.getaddrinfo`).

    The guard bounds the lookup by the connection's timeout.

    Raises:
        OSError: the lookup failed (`socket.gaierror`).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # One entry per address, in the order the system gave them.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(address: str) -> str | None:
    """Why a resolved IP address must not be called without an opt-in, if so.

    The rules of config validation (`palyra._addresses.address_problem`); an
    unparsable address is refused too: it cannot be checked.
    """
    try:
        problem = judge(address)
    except ValueError:
        return f"resolves to an unrecognised address ({address!r})"
    return None if problem is None else f"resolves to {problem}"


def localhost_problem(host: str, address: str) -> str | None:
    """Why ``address`` breaks the promise of a ``localhost`` name, if so.

    RFC 6761 has ``localhost`` and ``*.localhost`` name this machine, and
    palyra lets them use plain http for it; a resolver that answers anything
    but loopback would send that plaintext across the network.
    """
    if not is_localhost_name(host):
        return None
    try:
        loopback = is_loopback(ipaddress.ip_address(address))
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"is a localhost name but resolves to {address}, not a loopback address"
        " (RFC 6761); this resolver does not keep that promise"
    )


class NetworkGuard:
    """Resolves and checks the host of each new upstream connection.

    Lookups are single-flight: connections opened at once to the same host and
    port share one lookup, in one thread of its own, so a resolver that hangs
    never piles up threads. The resolver may be called from several threads.

    Args:
        resolver: How to resolve a host (default: the system resolver).
        trusted: ``(host, port)`` pairs of providers that set
            ``allow_private_base_url``: their addresses are not checked.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        trusted: Iterable[tuple[str, int]] = (),
    ) -> None:
        self._resolver = resolver
        self._trusted = frozenset((_host_key(host), port) for host, port in trusted)
        self._lookups: dict[tuple[str, int], _Lookup] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_providers(
        cls, providers: Iterable[ProviderConfig], resolver: Resolver | None = None
    ) -> NetworkGuard:
        """The guard of a client: trusts the enabled providers that opted in."""
        trusted = []
        for provider in providers:
            if provider.enabled and provider.allow_private_base_url:
                parts = urlsplit(provider.effective_base_url)
                port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
                trusted.append(((parts.hostname or "").strip("[]"), port))
        return cls(resolver, trusted)

    def trusts(self, host: str, port: int) -> bool:
        """Whether connections to ``host:port`` skip the check (an opt-in)."""
        return (_host_key(host), port) in self._trusted

    def check(self, host: str, port: int, addresses: list[str]) -> list[str]:
        """The addresses, in connection order, if every one may be called.

        Raises:
            BlockedAddress: naming the first refused address.
            LookupFailed: the resolver found no address.
        """
        if not addresses:
            raise LookupFailed(f"{host!r} resolved to no address")
        trusted = self.trusts(host, port)
        for address in addresses:
            problem = None if trusted else address_problem(address)
            problem = problem or localhost_problem(host, address)
            if problem is not None:
                raise BlockedAddress(host, port, problem)
        return _interleaved(addresses)

    def resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        """The checked addresses of ``host`` (a literal address is only checked).

        Raises:
            BlockedAddress, LookupFailed, LookupTimeout.
        """
        literal = _literal(host)
        if literal is not None:
            return self.check(host, port, [literal])
        seconds = timeout if timeout is not None else _RESOLVE_TIMEOUT
        found = self._lookup(host, port).wait(seconds)
        return self.check(host, port, _addresses(host, found))

    async def aresolve(self, host: str, port: int, within: float | None) -> list[str]:
        """Async `resolve`: waits for the lookup at most ``within`` seconds."""
        literal = _literal(host)
        if literal is not None:
            return self.check(host, port, [literal])
        seconds = within if within is not None else _RESOLVE_TIMEOUT
        found = await self._lookup(host, port).await_for(seconds)
        return self.check(host, port, _addresses(host, found))

    def _lookup(self, host: str, port: int) -> _Lookup:
        key = (host, port)
        with self._lock:
            running = self._lookups.get(key)
            if running is not None and not running.stale():
                return running
            lookup = self._lookups[key] = _Lookup(host)
        resolver = self._resolver or system_resolver  # read now: tests patch it

        def run() -> None:
            found = _resolved(resolver, host, port)
            with self._lock:
                if self._lookups.get(key) is lookup:
                    del self._lookups[key]
            lookup.finish(found)

        threading.Thread(target=run, name="palyra-dns", daemon=True).start()
        return lookup


class _Lookup:
    """One lookup in its thread, and whoever waits for it, sync or async."""

    __slots__ = ("_done", "_found", "_host", "_lock", "_started", "_waiters")

    def __init__(self, host: str) -> None:
        self._host = host
        self._started = time.monotonic()
        self._done = threading.Event()
        self._found: Found = []
        self._lock = threading.Lock()
        self._waiters: list[Callable[[Found], None]] = []

    def stale(self) -> bool:
        return time.monotonic() - self._started > _STALE_LOOKUP

    def finish(self, found: Found) -> None:
        with self._lock:
            self._found = found
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter(found)

    def wait(self, seconds: float) -> Found:
        """The answer; LookupTimeout after ``seconds`` (the lookup goes on)."""
        if not self._done.wait(seconds):
            raise _too_slow(self._host, seconds)
        return self._found

    async def await_for(self, seconds: float) -> Found:
        """Async `wait`."""
        import asyncio  # loaded by whoever runs the loop

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Found] = loop.create_future()

        def deliver(found: Found) -> None:
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(_settle, answer, found)

        with self._lock:
            done = self._done.is_set()
            if not done:
                self._waiters.append(deliver)
        if done:
            return self._found
        try:
            async with asyncio.timeout(seconds):
                return await answer
        except TimeoutError:
            raise _too_slow(self._host, seconds) from None


def _host_key(host: str) -> str:
    """A host as connections name it: lower case, no trailing dot, IDNA."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _interleaved(addresses: list[str]) -> list[str]:
    """IPv6 and IPv4 in turn, the first answer's family first (RFC 8305), so a
    black-holed family costs one attempt, not all of them."""
    first: list[str] = []
    second: list[str] = []
    family = ":" in addresses[0]
    for address in addresses:
        (first if (":" in address) == family else second).append(address)
    merged: list[str] = []
    for pair in zip(first, second, strict=False):
        merged.extend(pair)
    longer = first if len(first) > len(second) else second
    return merged + longer[min(len(first), len(second)) :]


def _literal(host: str) -> str | None:
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return None
    return bare


def _resolved(resolver: Resolver, host: str, port: int) -> Found:
    """The addresses, or what the resolver raised: every failure of a
    resolver, a buggy one included, is a connection error, never a crash."""
    try:
        return [str(address) for address in resolver(host, port)]
    except Exception as exc:
        return exc


def _addresses(host: str, found: Found) -> list[str]:
    if isinstance(found, Exception):
        reason = found.strerror if isinstance(found, OSError) else None
        shown = excerpt(reason or str(found) or type(found).__name__, limit=120)
        raise LookupFailed(f"could not resolve {host!r} ({shown})", found) from found
    return found


def _settle(answer: Any, found: Found) -> None:
    if not answer.done():  # a call that gave up has cancelled it
        answer.set_result(found)


def _too_slow(host: str, seconds: float) -> LookupTimeout:
    return LookupTimeout(f"resolving {host!r} took longer than {seconds:g}s")
