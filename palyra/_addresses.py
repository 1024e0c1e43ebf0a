"""Which IP addresses palyra may connect to without an opt-in.

One table, after the IANA IPv4 and IPv6 Special-Purpose Address Registries
(with multicast, and for IPv6 everything outside global unicast ``2000::/3``),
judges both the literal addresses of base URLs (config validation) and the
addresses a host resolves to (the network guard). The most specific range
that holds an address decides. Ranges that embed an IPv4 address (IPv4-mapped,
NAT64, 6to4, Teredo, IPv4-compatible) are also judged by the address they
embed, so a private IPv4 address cannot be reached dressed as IPv6.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import NamedTuple

__all__ = [
    "RANGES",
    "IPAddress",
    "Range",
    "Verdict",
    "address_problem",
    "is_localhost_name",
    "is_loopback",
    "is_loopback_host",
    "range_of",
]

IPAddress = IPv4Address | IPv6Address
Embeds = Callable[[IPv6Address], tuple[IPv4Address, ...]]


class Verdict(enum.Enum):
    """What a range's own addresses are (an embedded address may refuse more)."""

    PUBLIC = "allowed"
    LOOPBACK = "allowed (loopback)"
    REFUSED = "refused"


class Range(NamedTuple):
    """One row of the table."""

    network: IPv4Network | IPv6Network
    verdict: Verdict
    name: str
    """Why the range is special: shown in errors and in the docs' table."""
    embeds: Embeds | None = None
    """The IPv4 addresses inside one of its addresses, if it carries any."""
    mapped: bool = False
    """Sockets treat the address as its IPv4 address (loopback stays loopback);
    other embeddings go through a relay or translator to the IPv4 address."""


def _last_32_bits(address: IPv6Address) -> tuple[IPv4Address, ...]:
    return (IPv4Address(int(address) & 0xFFFF_FFFF),)


def _sixtofour(address: IPv6Address) -> tuple[IPv4Address, ...]:
    embedded = address.sixtofour
    return () if embedded is None else (embedded,)


def _teredo(address: IPv6Address) -> tuple[IPv4Address, ...]:
    # (server, client): the client's is stored inverted in the last 32 bits.
    pair = address.teredo
    return () if pair is None else (pair[1], pair[0])


def _row(
    cidr: str,
    verdict: Verdict,
    name: str,
    embeds: Embeds | None = None,
    *,
    mapped: bool = False,
) -> Range:
    return Range(ip_network(cidr), verdict, name, embeds, mapped)


_OK, _LOOP, _NO = Verdict.PUBLIC, Verdict.LOOPBACK, Verdict.REFUSED

RANGES: tuple[Range, ...] = (
    _row("0.0.0.0/0", _OK, "public"),
    _row("0.0.0.0/8", _NO, "this network: 0.0.0.0 reaches this host"),
    _row("10.0.0.0/8", _NO, "private-use"),
    _row("100.64.0.0/10", _NO, "shared address space: CGNAT, Alibaba Cloud metadata"),
    _row("127.0.0.0/8", _LOOP, "loopback"),
    _row("169.254.0.0/16", _NO, "link-local: cloud metadata"),
    _row("172.16.0.0/12", _NO, "private-use"),
    # Its two anycast services (192.0.0.9, 192.0.0.10) are no API upstreams.
    _row("192.0.0.0/24", _NO, "IETF protocol assignments"),
    _row("192.0.2.0/24", _NO, "documentation, TEST-NET-1"),
    _row("192.31.196.0/24", _OK, "AS112 anycast, globally reachable"),
    _row("192.52.193.0/24", _OK, "AMT anycast, globally reachable"),
    _row("192.88.99.0/24", _NO, "6to4 relay anycast, deprecated"),
    _row("192.168.0.0/16", _NO, "private-use"),
    _row("192.175.48.0/24", _OK, "AS112 direct delegation, globally reachable"),
    _row("198.18.0.0/15", _NO, "benchmarking"),
    _row("198.51.100.0/24", _NO, "documentation, TEST-NET-2"),
    _row("203.0.113.0/24", _NO, "documentation, TEST-NET-3"),
    _row("224.0.0.0/4", _NO, "multicast"),
    _row("240.0.0.0/4", _NO, "reserved"),
    _row("255.255.255.255/32", _NO, "limited broadcast"),
    # IPv6: only global unicast is public; the rest is reserved or unassigned.
    _row("::/0", _NO, "not global unicast: only 2000::/3 is"),
    _row("2000::/3", _OK, "global unicast"),
    _row("::/128", _NO, "unspecified"),
    _row("::1/128", _LOOP, "loopback"),
    _row("::/96", _NO, "IPv4-compatible, deprecated", _last_32_bits),
    _row("::ffff:0:0/96", _OK, "IPv4-mapped", _last_32_bits, mapped=True),
    _row("64:ff9b::/96", _OK, "NAT64", _last_32_bits),
    _row("64:ff9b:1::/48", _NO, "local-use NAT64"),
    _row("100::/64", _NO, "discard-only"),
    _row("2001::/23", _NO, "IETF protocol assignments"),
    # A client tunnel: no upstream lives behind one, whatever it embeds.
    _row("2001::/32", _NO, "Teredo", _teredo),
    _row("2001:db8::/32", _NO, "documentation"),
    _row("2002::/16", _OK, "6to4", _sixtofour),
    _row("3fff::/20", _NO, "documentation"),
    _row("5f00::/16", _NO, "SRv6 segment identifiers"),
    _row("fc00::/7", _NO, "unique local: AWS metadata at fd00:ec2::254"),
    _row("fe80::/10", _NO, "link-local"),
    _row("fec0::/10", _NO, "site-local, deprecated"),
    _row("ff00::/8", _NO, "multicast"),
)

# Most specific first, per IP version: the first range that holds an address
# is the one that decides.
_BY_VERSION = {
    version: sorted(
        (r for r in RANGES if r.network.version == version),
        key=lambda r: -r.network.prefixlen,
    )
    for version in (4, 6)
}


def range_of(address: IPAddress) -> Range:
    """The most specific range of the table that holds ``address``."""
    for entry in _BY_VERSION[address.version]:
        if address in entry.network:
            return entry
    raise AssertionError("unreachable: 0.0.0.0/0 and ::/0 hold every address")


def address_problem(address: str) -> str | None:
    """Why palyra refuses an IP address without an opt-in, or None if it may
    connect.

    Loopback is allowed. An address that embeds an IPv4 address is refused
    when the embedded one is not public (loopback counts only in the
    IPv4-mapped form: the others leave this machine), naming it.

    Args:
        address: An IP address as written (shown in the answer as it is).

    Returns:
        A phrase such as ``"10.1.2.3 in 10.0.0.0/8 (private-use)"``.

    Raises:
        ValueError: ``address`` is not an IP address.
    """
    ip = ip_address(address)
    entry = range_of(ip)
    if entry.embeds is not None:
        assert isinstance(ip, IPv6Address)
        for inner in entry.embeds(ip):
            problem = _embedded_problem(inner, entry.mapped)
            if problem is not None:
                return f"{address} ({entry.name}), which embeds {problem}"
    if entry.verdict is Verdict.REFUSED:
        return f"{address} in {entry.network} ({entry.name})"
    return None


def _embedded_problem(inner: IPv4Address, mapped: bool) -> str | None:
    entry = range_of(inner)
    loopback = entry.verdict is Verdict.LOOPBACK
    if entry.verdict is Verdict.PUBLIC or (loopback and mapped):
        return None
    name = entry.name
    if loopback:
        name += ", but of the relay or translator: not this machine"
    return f"{inner} in {entry.network} ({name})"


def is_loopback(address: IPAddress) -> bool:
    """Whether ``address`` is this machine (an IPv4-mapped loopback included)."""
    entry = range_of(address)
    if entry.mapped and entry.embeds is not None:
        assert isinstance(address, IPv6Address)
        inner = entry.embeds(address)
        return all(range_of(v4).verdict is Verdict.LOOPBACK for v4 in inner)
    return entry.verdict is Verdict.LOOPBACK


def is_localhost_name(host: str) -> bool:
    """Whether a host name is ``localhost`` or under ``.localhost`` (RFC 6761)."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def is_loopback_host(host: str) -> bool:
    """Whether a URL host names this machine (a localhost name or loopback IP).

    A name is loopback by RFC 6761's promise; the network guard holds
    resolvers to it when a connection is opened.
    """
    bare = host.strip("[]")
    if is_localhost_name(bare):
        return True
    try:
        return is_loopback(ip_address(bare))
    except ValueError:
        return False
