"""The address rules: one table of special-purpose ranges judges literal base
URLs in the config and the addresses a host resolves to; IPv4 addresses
embedded in IPv6 ones are judged too; ``localhost`` names must resolve to
loopback; a resolver that raises is a typed connection error.

The end-to-end tests refuse before any connection is made; if the guard let an
address through, pytest-socket would stop the connection (and the test).
"""

from __future__ import annotations

import ipaddress
import random
import re
import socket
from pathlib import Path
from typing import Any

import pytest

import palyra
from palyra._addresses import RANGES, Verdict, address_problem, is_loopback_host
from palyra._core.netguard import BlockedAddress, LookupFailed, NetworkGuard
from tests.helpers import DRIVERS, chat

USER = [{"role": "user", "content": "hello rules"}]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "resilience.md"

# Teredo addresses: server 65.54.227.120, client stored inverted in the last
# 32 bits (0xf5fffffe is 10.0.0.1; 0x3fff fdd2 is 192.0.2.45; 0xb7f7 f7f7 is
# 72.8.8.8, public).
TEREDO_PRIVATE = "2001:0:4136:e378:8000:63bf:f5ff:fffe"
TEREDO_PUBLIC = "2001:0:4136:e378:8000:63bf:b7f7:f7f7"

# An address, and the start of why it is refused (after "points at" in the
# config, "resolves to" at connect time).
REFUSED = [
    ("100.100.100.200", "100.100.100.200 in 100.64.0.0/10 (shared address space"),
    ("100.64.0.1", "100.64.0.1 in 100.64.0.0/10 (shared address space"),
    ("fec0::1", "fec0::1 in fec0::/10 (site-local, deprecated)"),
    (
        "2002:a9fe:a9fe::1",
        "2002:a9fe:a9fe::1 (6to4), which embeds 169.254.169.254 in 169.254.0.0/16",
    ),
    (
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::a9fe:a9fe (NAT64), which embeds 169.254.169.254 in",
    ),
    (
        "64:ff9b::10.1.2.3",
        "64:ff9b::10.1.2.3 (NAT64), which embeds 10.1.2.3 in 10.0.0.0/8",
    ),
    (TEREDO_PRIVATE, f"{TEREDO_PRIVATE} (Teredo), which embeds 10.0.0.1 in"),
    ("::a9fe:a9fe", "::a9fe:a9fe (IPv4-compatible, deprecated), which embeds 169"),
    ("::ffff:100.100.100.200", "::ffff:100.100.100.200 (IPv4-mapped), which embeds"),
    ("192.0.2.1", "192.0.2.1 in 192.0.2.0/24 (documentation, TEST-NET-1)"),
    ("198.18.0.1", "198.18.0.1 in 198.18.0.0/15 (benchmarking)"),
    ("192.88.99.1", "192.88.99.1 in 192.88.99.0/24 (6to4 relay anycast"),
    ("255.255.255.255", "255.255.255.255 in 255.255.255.255/32 (limited broadcast)"),
    ("240.0.0.1", "240.0.0.1 in 240.0.0.0/4 (reserved)"),
    ("2001:db8::1", "2001:db8::1 in 2001:db8::/32 (documentation)"),
    ("3fff::1", "3fff::1 in 3fff::/20 (documentation)"),
    ("64:ff9b:1::1", "64:ff9b:1::1 in 64:ff9b:1::/48 (local-use NAT64)"),
    ("100::1", "100::1 in 100::/64 (discard-only)"),
    ("5f00::1", "5f00::1 in 5f00::/16 (SRv6 segment identifiers)"),
    ("4000::1", "4000::1 in ::/0 (not global unicast: only 2000::/3 is)"),
    # Public IPv4 inside, but the form itself is refused (see the table).
    (TEREDO_PUBLIC, f"{TEREDO_PUBLIC} in 2001::/32 (Teredo)"),
    ("::808:808", "::808:808 in ::/96 (IPv4-compatible, deprecated)"),
    # Loopback through a translator or relay is not this machine.
    ("64:ff9b::7f00:1", "64:ff9b::7f00:1 (NAT64), which embeds 127.0.0.1 in"),
    ("2002:7f00:1::1", "2002:7f00:1::1 (6to4), which embeds 127.0.0.1 in"),
]

# Public addresses in an embedding form, loopback, and globally reachable
# special-purpose ranges: connected to without an opt-in.
ALLOWED = [
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "::ffff:8.8.8.8",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback is this machine's loopback
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "192.31.196.1",  # AS112
    "8.8.8.8",
    "2606:4700::1111",
]


def _url(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}/v1"


def _config(base_url: str, **provider: Any) -> dict[str, Any]:
    entry = {"id": "corp", "kind": "openai", "base_url": base_url, "max_retries": 0}
    return {
        "providers": [{**entry, "auth_header": "none", **provider}],
        "models": [{"id": "m", "provider": "corp"}],
    }


def _answers(table: dict[str, Any]) -> Any:
    """A resolver answering from ``table`` (an exception in it is raised)."""

    def resolver(host: str, port: int) -> list[str]:
        answer = table[host]
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)

    return resolver


# -- the table ----------------------------------------------------------------------


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_special_purpose_addresses_are_refused_naming_the_range(
    address: str, why: str
) -> None:
    problem = address_problem(address)
    assert problem is not None
    assert problem.startswith(why)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_loopback_and_public_embedded_addresses_pass(address: str) -> None:
    assert address_problem(address) is None


def _old_rules_refuse(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """What palyra refused before the table: ``ipaddress``'s flags."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return False
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    flags = (ip.is_link_local, ip.is_private, ip.is_reserved, ip.is_multicast)
    return any(flags) or ip.is_unspecified or site_local


def _samples() -> list[str]:
    """Each range's edges, and random IPv4 and IPv6 addresses (fixed seed)."""
    draw = random.Random(9)
    found = []
    for entry in RANGES:
        network = entry.network
        found += [str(network.network_address), str(network.broadcast_address)]
    found += [str(ipaddress.IPv4Address(draw.getrandbits(32))) for _ in range(5000)]
    found += [str(ipaddress.IPv6Address(draw.getrandbits(128))) for _ in range(2000)]
    return found


def test_nothing_the_old_flags_refused_is_let_through() -> None:
    """The table only adds refusals, but for one deliberate change: NAT64
    forms of public IPv4 addresses pass (``ipaddress`` calls them reserved)."""
    nat64 = ipaddress.ip_network("64:ff9b::/96")
    for address in _samples():
        ip = ipaddress.ip_address(address)
        if _old_rules_refuse(ip) and ip not in nat64:
            assert address_problem(address) is not None, address


def test_every_range_is_in_the_docs_table_with_its_verdict() -> None:
    """docs/resilience.md lists the table; a row changed here must change there."""
    text = DOCS.read_text()
    for entry in RANGES:
        row = re.search(rf"^\| `{re.escape(str(entry.network))}` \|(.*)$", text, re.M)
        assert row is not None, entry.network
        refused = entry.verdict is Verdict.REFUSED
        assert ("refused" in row.group(1).split("|")[0]) == refused, entry.network


def test_loopback_hosts_for_plain_http() -> None:
    assert is_loopback_host("api.localhost")
    assert is_loopback_host("LOCALHOST.")
    assert is_loopback_host("[::ffff:127.0.0.1]")
    assert not is_loopback_host("localhost.example.com")
    assert not is_loopback_host("[64:ff9b::7f00:1]")


# -- the config: literal addresses -------------------------------------------------


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_the_config_refuses_literal_special_addresses(address: str, why: str) -> None:
    with pytest.raises(palyra.ConfigError) as info:
        palyra.PalyraConfig.from_dict(_config(_url(address)))
    assert f"base_url points at {why}" in str(info.value)
    assert "allow_private_base_url" in str(info.value)
    palyra.PalyraConfig.from_dict(_config(_url(address), allow_private_base_url=True))


@pytest.mark.parametrize("address", ALLOWED)
def test_the_config_accepts_public_and_loopback_literals(address: str) -> None:
    palyra.PalyraConfig.from_dict(_config(_url(address)))


# -- connections: the same addresses from a resolver --------------------------------


@pytest.mark.parametrize(("address", "why"), REFUSED)
@pytest.mark.anyio
async def test_a_resolved_special_address_is_refused(address: str, why: str) -> None:
    guard = NetworkGuard(_answers({"api.example.com": [address]}))
    with pytest.raises(BlockedAddress) as sync_info:
        guard.resolve("api.example.com", 443, 1.0)
    with pytest.raises(BlockedAddress) as async_info:
        await guard.aresolve("api.example.com", 443, 1.0)
    for info in (sync_info, async_info):
        assert info.value.reason.startswith(f"resolves to {why}")


@pytest.mark.parametrize("address", ALLOWED)
@pytest.mark.anyio
async def test_a_resolved_public_or_loopback_address_passes(address: str) -> None:
    guard = NetworkGuard(_answers({"api.example.com": [address]}))
    assert guard.resolve("api.example.com", 443, 1.0) == [address]
    assert await guard.aresolve("api.example.com", 443, 1.0) == [address]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_a_call_to_a_name_resolving_to_6to4_metadata_is_refused(
    driver: str,
) -> None:
    resolver = _answers({"api.example.com": ["2002:a9fe:a9fe::1"]})
    config = _config("https://api.example.com/v1")
    async with palyra.Palyra(config, resolver=resolver) as client:
        with pytest.raises(palyra.BlockedAddressError) as info:
            await chat(client, driver, USER)
    assert "which embeds 169.254.169.254" in info.value.reason
    assert [a.failure for a in info.value.attempts] == ["blocked"]


# -- localhost names must resolve to loopback ----------------------------------------


@pytest.mark.parametrize(
    "answer",
    [["93.184.216.34"], ["127.0.0.1", "93.184.216.34"], ["2606:4700::1111"]],
)
@pytest.mark.anyio
async def test_a_localhost_name_resolving_elsewhere_is_refused(
    answer: list[str],
) -> None:
    """Even for a trusted provider: the opt-in covers private addresses, not
    plaintext http sent off this machine."""
    for guard in (
        NetworkGuard(_answers({"api.localhost": answer})),
        NetworkGuard(_answers({"api.localhost": answer}), [("api.localhost", 80)]),
    ):
        with pytest.raises(BlockedAddress) as sync_info:
            guard.resolve("api.localhost", 80, 1.0)
        with pytest.raises(BlockedAddress) as async_info:
            await guard.aresolve("api.localhost", 80, 1.0)
        for info in (sync_info, async_info):
            assert info.value.reason.startswith(
                f"is a localhost name but resolves to {answer[-1]}, not a loopback"
            )


@pytest.mark.parametrize("host", ["localhost", "api.localhost", "API.LocalHost."])
@pytest.mark.anyio
async def test_a_localhost_name_resolving_to_loopback_passes(host: str) -> None:
    answer = ["::1", "127.0.0.1", "::ffff:127.0.0.1"]
    guard = NetworkGuard(_answers({host: answer}))
    assert sorted(guard.resolve(host, 80, 1.0)) == sorted(answer)
    assert sorted(await guard.aresolve(host, 80, 1.0)) == sorted(answer)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.anyio
async def test_plain_http_to_api_localhost_resolving_public_is_refused(
    driver: str,
) -> None:
    resolver = _answers({"api.localhost": ["93.184.216.34"]})
    config = _config("http://api.localhost:8080/v1")
    async with palyra.Palyra(config, resolver=resolver) as client:
        with pytest.raises(palyra.BlockedAddressError) as info:
            await chat(client, driver, USER)
    assert info.value.host == "api.localhost"
    assert "is a localhost name but resolves to 93.184.216.34" in str(info.value)


# -- a resolver that raises ----------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("a buggy resolver"),
        RuntimeError("resolver not started"),
        KeyError("api.example.com"),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    ],
    ids=lambda failure: type(failure).__name__,
)
@pytest.mark.anyio
async def test_a_guard_lookup_keeps_what_the_resolver_raised(
    failure: Exception,
) -> None:
    guard = NetworkGuard(_answers({"api.example.com": failure}))
    with pytest.raises(LookupFailed) as sync_info:
        guard.resolve("api.example.com", 443, 1.0)
    with pytest.raises(LookupFailed) as async_info:
        await guard.aresolve("api.example.com", 443, 1.0)
    for info in (sync_info, async_info):
        assert info.value.error is failure
        assert str(info.value).startswith("could not resolve 'api.example.com' (")


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "failure",
    [ValueError("bad answer"), RuntimeError("resolver down")],
    ids=lambda failure: type(failure).__name__,
)
@pytest.mark.anyio
async def test_a_raising_resolver_is_a_typed_connection_error(
    driver: str, failure: Exception
) -> None:
    resolver = _answers({"api.example.com": failure})
    config = _config("https://api.example.com/v1")
    async with palyra.Palyra(config, resolver=resolver) as client:
        with pytest.raises(palyra.APIConnectionError) as info:
            await chat(client, driver, USER)
    error = info.value
    assert type(error) is palyra.APIConnectionError
    assert error.__cause__ is failure
    assert f"could not resolve 'api.example.com' ({failure})" in str(error)
    assert (error.provider, error.model) == ("corp", "m")
    assert [a.failure for a in error.attempts] == ["connection"]
