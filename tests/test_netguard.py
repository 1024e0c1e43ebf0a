"""The DNS half of the base-URL guard, with injected resolvers (no network)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from palyra._config import ProviderConfig
from palyra._core.netguard import (
    address_problem,
    check_providers,
    guard,
    system_resolver,
)
from palyra._exceptions import ConfigError
from palyra._utils import private_address_problem


class FakeResolver:
    """Answers from a table; records every lookup."""

    def __init__(self, table: dict[str, list[str] | BaseException]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        answer = self.table[host]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def never_called(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolver called for {host}:{port}")


def provider(base_url: str | None, **kw: Any) -> ProviderConfig:
    kw.setdefault("id", "p")
    kw.setdefault("kind", "openai_compatible")
    if kw["kind"] != "deterministic":
        kw.setdefault("api_key_env", "X")
    return ProviderConfig(base_url=base_url, **kw)


def check_one(addresses: list[str], host: str = "api.example.com") -> list[str]:
    resolver = FakeResolver({host: addresses})
    errors = check_providers([provider(f"https://{host}/v1")], resolver)
    assert resolver.calls == [(host, 443)]
    return [message for _, message in errors]


@pytest.mark.parametrize(
    "addresses",
    [["93.184.216.34"], ["2606:2800:220:1:248:1893:25c8:1946"], ["127.0.0.1", "::1"]],
)
def test_public_and_loopback_addresses_pass(addresses: list[str]) -> None:
    assert check_one(addresses) == []


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("10.1.2.3", "a private or reserved address (10.1.2.3)"),
        ("192.168.1.1", "a private or reserved address (192.168.1.1)"),
        ("172.16.0.1", "a private or reserved address (172.16.0.1)"),
        ("172.31.255.254", "a private or reserved address (172.31.255.254)"),
        (
            "169.254.169.254",
            "a link-local address (169.254.169.254, e.g. cloud metadata)",
        ),
        ("fd00:ec2::254", "a private or reserved address (fd00:ec2::254)"),
        ("fc00::1", "a private or reserved address (fc00::1)"),
        ("fec0::1", "a private or reserved address (fec0::1)"),
        ("fe80::1%eth0", "a link-local address (fe80::1%eth0, e.g. cloud metadata)"),
        ("::ffff:10.0.0.1", "a private or reserved address (10.0.0.1)"),
        ("::ffff:169.254.169.254", "a link-local address (169.254.169.254"),
        ("0.0.0.0", "a private or reserved address (0.0.0.0)"),  # noqa: S104
        ("::", "a private or reserved address (::)"),
        ("224.0.0.1", "a multicast address (224.0.0.1)"),
        ("ff02::1", "a multicast address (ff02::1)"),
        ("not-an-ip", "an unrecognised address ('not-an-ip')"),
    ],
)
def test_refused_addresses_name_host_and_address(address: str, shown: str) -> None:
    [message] = check_one([address], host="internal.example")
    assert message.startswith(f"base_url host 'internal.example' resolves to {shown}")
    assert message.endswith("; set allow_private_base_url = true if this is intended")


def test_message_wording_matches_the_spec() -> None:
    assert check_one(["10.1.2.3"], host="internal.example") == [
        "base_url host 'internal.example' resolves to a private or reserved address"
        " (10.1.2.3); set allow_private_base_url = true if this is intended"
    ]


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "127.0.0.1",
        "::1",
        "10.0.0.5",
        "192.168.0.1",
        "172.20.1.1",
        "169.254.169.254",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",
        "::ffff:8.8.8.8",
        "0.0.0.0",  # noqa: S104 - an address to classify, not to bind
        "::",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
    ],
)
def test_same_verdict_as_the_literal_ip_check(address: str) -> None:
    """DNS answers are judged exactly like literal IPs in the config."""
    literal = private_address_problem(
        f"https://[{address}]/" if ":" in address else f"https://{address}/"
    )
    resolved = address_problem(address)
    assert (literal is None) == (resolved is None)
    if literal and resolved:
        assert resolved == literal.replace("points at", "resolves to")


def test_one_private_address_among_public_ones_is_refused() -> None:
    [message] = check_one(["93.184.216.34", "10.0.0.7", "1.1.1.1"])
    assert "(10.0.0.7)" in message


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "Name or service not known",
        ),
        (TimeoutError("lookup took longer than 5s"), "lookup took longer than 5s"),
        (OSError("network is unreachable"), "network is unreachable"),
        (UnicodeError("label too long"), "label too long"),
        (OSError(), "OSError"),
    ],
)
def test_resolution_failure_fails_closed(failure: BaseException, reason: str) -> None:
    resolver = FakeResolver({"gone.example": failure})
    errors = check_providers([provider("https://gone.example")], resolver)
    assert errors == [
        (
            "providers[0].base_url",
            f"base_url host 'gone.example' could not be resolved ({reason}); the"
            " address cannot be checked. Set allow_private_base_url = true to skip"
            " the check",
        )
    ]


def test_empty_answer_fails_closed() -> None:
    [message] = check_one([])
    assert "could not be resolved (no addresses returned)" in message


def test_other_resolver_bugs_propagate() -> None:
    """Only lookup failures become config errors; a broken resolver is a bug."""
    resolver = FakeResolver({"api.example.com": KeyError("bug")})
    with pytest.raises(KeyError):
        check_providers([provider("https://api.example.com")], resolver)


@pytest.mark.parametrize(
    "config",
    [
        provider("https://internal.example", allow_private_base_url=True),
        provider("https://internal.example", enabled=False),
        provider(None, kind="deterministic"),
        provider(None),  # the kind's default base URL: a fixed public host
        provider("https://93.184.216.34/v1"),
        provider("https://[2606:4700::1111]/v1"),
        provider("http://127.0.0.1:8080/v1"),
        provider("http://[::1]:8080"),
        provider("https://10.0.0.5", allow_private_base_url=True),
    ],
)
def test_skipped_providers_are_not_resolved(config: ProviderConfig) -> None:
    assert check_providers([config], never_called) == []
    guard([config], never_called)


def test_localhost_is_resolved_and_loopback_passes() -> None:
    resolver = FakeResolver({"localhost": ["::1", "127.0.0.1"]})
    assert check_providers([provider("http://localhost:11434/v1")], resolver) == []
    assert resolver.calls == [("localhost", 11434)]


def test_dot_localhost_that_resolves_elsewhere_is_refused() -> None:
    resolver = FakeResolver({"box.localhost": ["10.9.9.9"]})
    [(path, message)] = check_providers([provider("http://box.localhost")], resolver)
    assert path == "providers[0].base_url"
    assert "host 'box.localhost'" in message
    assert "(10.9.9.9)" in message
    assert resolver.calls == [("box.localhost", 80)]


def test_each_host_and_port_is_resolved_once() -> None:
    resolver = FakeResolver({"a.example": ["10.0.0.1"], "b.example": ["8.8.8.8"]})
    configs = [
        provider("https://a.example/v1", id="a1"),
        provider("https://a.example/v2", id="a2"),
        provider("https://b.example", id="b1"),
        provider("https://a.example:8443", id="a3"),
        provider("https://B.EXAMPLE/x", id="b2"),
    ]
    errors = check_providers(configs, resolver)
    assert sorted(resolver.calls) == [
        ("a.example", 443),
        ("a.example", 8443),
        ("b.example", 443),
    ]
    # Every provider on the bad host is reported, at its own path.
    assert [path for path, _ in errors] == [
        "providers[0].base_url",
        "providers[1].base_url",
        "providers[3].base_url",
    ]


def test_paths_follow_the_index_and_can_be_overridden() -> None:
    resolver = FakeResolver({"ok.example": ["8.8.8.8"], "bad.example": ["10.0.0.1"]})
    configs = [
        provider(None, id="det", kind="deterministic"),
        provider("https://ok.example", id="ok"),
        provider("https://bad.example", id="bad"),
    ]
    assert [p for p, _ in check_providers(configs, resolver)] == [
        "providers[2].base_url"
    ]
    mapped = check_providers(configs, resolver, paths={"bad": "providers[7]"})
    assert [p for p, _ in mapped] == ["providers[7].base_url"]


def test_guard_raises_config_error_with_every_problem() -> None:
    resolver = FakeResolver(
        {
            "meta.example": ["169.254.169.254"],
            "gone.example": socket.gaierror(socket.EAI_NONAME, "nope"),
            "ok.example": ["8.8.8.8"],
        }
    )
    configs = [
        provider("https://ok.example", id="ok"),
        provider("https://meta.example", id="meta"),
        provider("https://gone.example", id="gone"),
    ]
    with pytest.raises(ConfigError) as caught:
        guard(configs, resolver)
    assert [path for path, _ in caught.value.errors] == [
        "providers[1].base_url",
        "providers[2].base_url",
    ]
    text = str(caught.value)
    assert "providers[1].base_url: base_url host 'meta.example'" in text
    assert "cloud metadata" in text
    assert "could not be resolved (nope)" in text
    guard(configs[:1], resolver)  # nothing wrong: no error


def test_messages_never_carry_headers_or_keys() -> None:
    secret = "sk-palyraTESTkey0123456789abcdefSECRET"
    config = provider("https://internal.example/v1", headers={"X-Trace": "trace-value"})
    resolver = FakeResolver(
        {"internal.example": OSError(f"failed with token={secret}")}
    )
    [(_, message)] = check_providers([config], resolver)
    assert secret not in message
    assert "trace-value" not in message
    assert "token=<redacted>" in message


def test_system_resolver_resolves_loopback_names() -> None:
    assert "127.0.0.1" in system_resolver("127.0.0.1", 80)
    addresses = system_resolver("localhost", 443, timeout=5.0)
    assert addresses
    assert all(address_problem(a) is None for a in addresses)
    assert len(addresses) == len(set(addresses))


def test_system_resolver_passes_lookup_errors_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    with pytest.raises(socket.gaierror, match="Name or service not known"):
        system_resolver("nowhere.invalid", 443)


def test_system_resolver_gives_up_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    calls: list[tuple[Any, ...]] = []

    def hanging(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        release.wait(10)  # far longer than the timeout; released at the end
        raise socket.gaierror(socket.EAI_AGAIN, "too late")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"longer than 0\.2s"):
            system_resolver("slow.example", 443, timeout=0.2)
        elapsed = time.monotonic() - started
    finally:
        release.set()  # let the abandoned daemon thread finish
    assert 0.15 <= elapsed < 2.0
    assert calls == [("slow.example", 443)]


def test_system_resolver_timeout_fails_closed_in_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def hanging(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", hanging)

    def quick(host: str, port: int) -> list[str]:
        return system_resolver(host, port, timeout=0.1)

    try:
        [(_, message)] = check_providers([provider("https://slow.example")], quick)
    finally:
        release.set()
    assert "could not be resolved (lookup took longer than 0.1s)" in message


# -- the guard when a client is built ----------------------------------------------


def _client_config(base_url: str, **provider: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"id": "local", "kind": "deterministic"},
            {
                "id": "corp",
                "kind": "openai",
                "base_url": base_url,
                "auth_header": "none",
                **provider,
            },
        ],
        "models": [{"id": "m", "provider": "corp"}],
    }


def test_client_refuses_a_host_that_resolves_to_metadata() -> None:
    import palyra

    def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("llm.corp.example", 443)
        return ["169.254.169.254"]

    with pytest.raises(palyra.ConfigError) as info:
        palyra.Palyra(_client_config("https://llm.corp.example/v1"), resolver=resolver)
    assert info.value.errors[0][0] == "providers[1].base_url"
    assert "link-local" in str(info.value)


def test_client_fails_closed_when_the_host_cannot_be_resolved() -> None:
    import palyra

    def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(palyra.ConfigError, match="could not be resolved"):
        palyra.Palyra(_client_config("https://typo.example/v1"), resolver=resolver)


def test_client_accepts_public_hosts_and_opt_ins() -> None:
    import palyra

    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.0.0.8"] if host == "vllm.internal" else ["203.0.114.9"]

    palyra.Palyra(_client_config("https://api.example/v1"), resolver=resolver)
    palyra.Palyra(
        _client_config("https://vllm.internal/v1", allow_private_base_url=True),
        resolver=resolver,
    )
    palyra.Palyra(
        {
            "providers": [{"id": "o", "kind": "openai"}],
            "models": [{"id": "m", "provider": "o"}],
        },
        resolver=resolver,
    )  # default host: not asked
    assert asked == ["api.example"]
    with pytest.raises(palyra.ConfigError, match="private or reserved"):
        palyra.Palyra(_client_config("https://vllm.internal/v1"), resolver=resolver)
