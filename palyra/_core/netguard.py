"""The DNS half of the base-URL guard: host names must not reach private networks.

Config validation checks only *literal* IPs (`private_address_problem`); a host
name can point anywhere, so it is resolved when the client is built and every
address is checked. A name that cannot be resolved is refused (fail closed): an
address never seen cannot be checked. The resolver is injected, so tests never
touch the network.
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from .._exceptions import ConfigError
from .._utils import excerpt

__all__: list[str] = []

Resolver = Callable[[str, int], list[str]]
"""Takes a host and port; returns the IP address strings the host resolves to."""

_DEFAULT_PORTS = {"https": 443, "http": 80}


class _Provider(Protocol):
    """The fields of `ProviderConfig` the guard reads (properties: read-only)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def allow_private_base_url(self) -> bool: ...
    @property
    def enabled(self) -> bool: ...


def system_resolver(host: str, port: int, *, timeout: float = 5.0) -> list[str]:
    """Resolve ``host`` with the system resolver, waiting at most ``timeout`` s.

    `socket.getaddrinfo` takes no timeout and can block for tens of seconds on
    a broken resolver, which would hang client construction. It runs in a
    daemon thread; on timeout the thread is abandoned (it cannot be cancelled,
    and being a daemon it never keeps the process alive).

    Raises:
        TimeoutError: the lookup took longer than ``timeout``.
        OSError: the lookup failed (`socket.gaierror`).
    """
    box: queue.Queue[list[str] | BaseException] = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            # One entry per address, in the order the system gave them.
            box.put(list(dict.fromkeys(str(info[4][0]) for info in infos)))
        except BaseException as exc:  # handed to the caller, not swallowed
            box.put(exc)

    threading.Thread(target=lookup, name="palyra-dns", daemon=True).start()
    try:
        outcome = box.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"lookup took longer than {timeout:g}s") from None
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def address_problem(address: str) -> str | None:
    """Why a resolved IP address must not be called without an opt-in, if so.

    Same rules as `private_address_problem` (loopback allowed; link-local,
    private, reserved, unspecified and multicast refused; IPv4-mapped IPv6
    unwrapped), plus deprecated IPv6 site-local (fec0::/10). An unparsable
    address is refused: it cannot be checked.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"resolves to an unrecognised address ({address!r})"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None
    if ip.is_link_local:
        return f"resolves to a link-local address ({ip}, e.g. cloud metadata)"
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    if ip.is_private or ip.is_reserved or ip.is_unspecified or site_local:
        return f"resolves to a private or reserved address ({ip})"
    if ip.is_multicast:
        return f"resolves to a multicast address ({ip})"
    return None


def check_providers(
    providers: Iterable[_Provider],
    resolver: Resolver,
    *,
    paths: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Resolve each provider's base URL host and check every address.

    Skipped: disabled providers, ``allow_private_base_url``, ``deterministic``,
    an unset ``base_url`` (the kinds' defaults are fixed public hosts) and
    literal-IP hosts (checked at config time). Each distinct (host, port) is
    resolved once.

    Args:
        providers: Provider configs; the i-th is reported as ``providers[i]``.
        resolver: How to resolve a host (`system_resolver` in production).
        paths: Provider id to its config path (e.g. ``"providers[3]"``), when
            the sequence given is not the config's own list.

    Returns:
        ``(path, message)`` pairs as in `ConfigError`, empty when all is well.
    """
    errors: list[tuple[str, str]] = []
    # (host, port) -> the addresses, or the reason they could not be had.
    seen: dict[tuple[str, int], list[str] | str] = {}
    for index, provider in enumerate(providers):
        url = provider.base_url
        if (
            not provider.enabled
            or provider.allow_private_base_url
            or provider.kind == "deterministic"
            or url is None
        ):
            continue
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:  # a literal IP was already checked at config time
            ipaddress.ip_address(host)
            continue
        except ValueError:
            pass
        key = (host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 443))
        if key not in seen:
            seen[key] = _resolve(resolver, *key)
        path = (paths or {}).get(provider.id, f"providers[{index}]") + ".base_url"
        found = seen[key]
        if isinstance(found, str):
            errors.append((path, _unresolved(host, found)))
            continue
        problem = next(filter(None, map(address_problem, found)), None)
        if problem:
            hint = "set allow_private_base_url = true if this is intended"
            errors.append((path, f"base_url host {host!r} {problem}; {hint}"))
    return errors


def guard(
    providers: Iterable[_Provider],
    resolver: Resolver,
    *,
    paths: Mapping[str, str] | None = None,
) -> None:
    """Raise `ConfigError` if any provider fails `check_providers`."""
    errors = check_providers(providers, resolver, paths=paths)
    if errors:
        raise ConfigError(errors)


def _resolve(resolver: Resolver, host: str, port: int) -> list[str] | str:
    """The addresses, or why there are none (a string): failures fail closed."""
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:  # TimeoutError and gaierror included
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        return excerpt(reason or type(exc).__name__, limit=120)
    return addresses or "no addresses returned"


def _unresolved(host: str, reason: str) -> str:
    return (
        f"base_url host {host!r} could not be resolved ({reason}); the address"
        " cannot be checked. Set allow_private_base_url = true to skip the check"
    )
