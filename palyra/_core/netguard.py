"""The network guard: connections to upstreams must not reach private networks.

It runs when a connection is opened, inside palyra's own transports, through
httpcore's network-backend seam (sync and async). Each new connection's host
is resolved once, every address is checked, and the connection goes to an
address that passed. No name is resolved twice, so a DNS server that answers
a public address first and a private one later (rebinding) is refused on the
connection that sees the private one. Nothing is resolved when a client is
built: an unreachable resolver is an ordinary connection error at call time.

Config validation checks literal addresses without any I/O
(`palyra._utils.private_address_problem`); the same rules apply here. A
provider with ``allow_private_base_url`` is trusted: its host is not checked.
A transport passed to `Palyra` replaces palyra's and the guard with it.

This module decides; `palyra._core.connect` (httpcore's backends and httpx's
transports, loaded with the first network client) connects.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from .._config import ProviderConfig
from .._utils import excerpt, special_address

__all__ = [
    "BlockedAddress",
    "LookupFailed",
    "LookupTimeout",
    "NetworkGuard",
    "Resolver",
    "address_problem",
    "system_resolver",
]

Resolver = Callable[[str, int], list[str]]
"""Takes a host and port; returns the IP address strings the host resolves to."""

_DEFAULT_PORTS = {"https": 443, "http": 80}
_RESOLVE_TIMEOUT = 5.0  # when httpcore gives no connect timeout


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
    """A host could not be resolved: an ordinary connection error."""


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

    The rules of config validation (`palyra._utils.special_address`); an
    unparsable address is refused too: it cannot be checked.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"resolves to an unrecognised address ({address!r})"
    kind = special_address(ip)
    return None if kind is None else f"resolves to {kind}"


class NetworkGuard:
    """Resolves and checks the host of each new upstream connection.

    Args:
        resolver: How to resolve a host (default: the system resolver).
        trusted: ``(host, port)`` pairs of providers that set
            ``allow_private_base_url``: connected to without a check.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        trusted: Iterable[tuple[str, int]] = (),
    ) -> None:
        self._resolver = resolver
        self._trusted = frozenset((host.lower(), port) for host, port in trusted)

    @classmethod
    def for_providers(
        cls, providers: Iterable[ProviderConfig], resolver: Resolver | None = None
    ) -> NetworkGuard:
        """The guard of a client: trusts the providers that opted in."""
        trusted = []
        for provider in providers:
            if provider.allow_private_base_url and provider.base_url:
                parts = urlsplit(provider.base_url)
                port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
                trusted.append(((parts.hostname or "").strip("[]"), port))
        return cls(resolver, trusted)

    def trusts(self, host: str, port: int) -> bool:
        """Whether connections to ``host:port`` skip the check (an opt-in)."""
        return (host.lower(), port) in self._trusted

    def check(self, host: str, port: int, addresses: list[str]) -> list[str]:
        """The addresses, if every one of them may be connected to.

        Raises:
            BlockedAddress: naming the first refused address.
            LookupFailed: the resolver found no address.
        """
        if not addresses:
            raise LookupFailed(f"{host!r} resolved to no address")
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                raise BlockedAddress(host, port, problem)
        return addresses

    def resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        """The checked addresses of ``host`` (a literal address is only checked).

        Raises:
            BlockedAddress, LookupFailed, LookupTimeout.
        """
        literal = _literal(host)
        if literal is not None:
            return self.check(host, port, [literal])
        resolver = self._resolver or system_resolver  # read now: tests patch it
        return self.check(host, port, _bounded(resolver, host, port, timeout))

    async def aresolve(self, host: str, port: int, within: float | None) -> list[str]:
        """Async `resolve`: the resolver runs in a thread, awaited at most
        ``within`` seconds (the connection's timeout)."""
        literal = _literal(host)
        if literal is not None:
            return self.check(host, port, [literal])
        resolver = self._resolver or system_resolver
        return self.check(host, port, await _abounded(resolver, host, port, within))


def _literal(host: str) -> str | None:
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return None
    return bare


def _resolved(resolver: Resolver, host: str, port: int) -> list[str] | str:
    """The addresses, or why there are none (a string): every failure of a
    resolver, a buggy one included, is a connection error, never a crash."""
    try:
        return [str(address) for address in resolver(host, port)]
    except Exception as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        return excerpt(reason or type(exc).__name__, limit=120)


def _addresses(host: str, found: list[str] | str) -> list[str]:
    if isinstance(found, str):
        raise LookupFailed(f"could not resolve {host!r} ({found})")
    return found


def _bounded(
    resolver: Resolver, host: str, port: int, timeout: float | None
) -> list[str]:
    # getaddrinfo takes no timeout and can block for tens of seconds on a broken
    # resolver. It runs in a daemon thread; on timeout the thread is abandoned
    # (it cannot be cancelled, and a daemon never keeps the process alive).
    seconds = timeout if timeout is not None else _RESOLVE_TIMEOUT
    box: queue.Queue[list[str] | str] = queue.Queue(maxsize=1)
    threading.Thread(
        target=lambda: box.put(_resolved(resolver, host, port)),
        name="palyra-dns",
        daemon=True,
    ).start()
    try:
        found = box.get(timeout=seconds)
    except queue.Empty:
        raise _too_slow(host, seconds) from None
    return _addresses(host, found)


async def _abounded(
    resolver: Resolver, host: str, port: int, within: float | None
) -> list[str]:
    import asyncio  # loaded by whoever runs the loop

    # A thread of its own, not the loop's executor: lookups abandoned on a
    # broken resolver must not use up the workers everyone else shares.
    seconds = within if within is not None else _RESOLVE_TIMEOUT
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[list[str] | str] = loop.create_future()

    def lookup() -> None:
        found = _resolved(resolver, host, port)
        with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
            loop.call_soon_threadsafe(_settle, answer, found)

    threading.Thread(target=lookup, name="palyra-dns", daemon=True).start()
    try:
        async with asyncio.timeout(seconds):
            found = await answer
    except TimeoutError:
        raise _too_slow(host, seconds) from None
    return _addresses(host, found)


def _settle(answer: Any, found: list[str] | str) -> None:
    if not answer.done():  # a call that gave up has cancelled it
        answer.set_result(found)


def _too_slow(host: str, seconds: float) -> LookupTimeout:
    return LookupTimeout(f"resolving {host!r} took longer than {seconds:g}s")
