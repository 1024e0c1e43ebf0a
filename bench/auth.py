"""Benchmark 10: what a call through an auth profile costs, and what it reads.

Issue 10's target: the credential of a call is resolved from memory, with no
keyring read per request, and a call through an ``auth_profile`` costs at most
5 microseconds more than one through ``api_key_env``.

- End to end: `Palyra.chat` over `httpx.MockTransport` (no socket) through
  each way of getting a credential, against the same provider reading its key
  from ``api_key_env``, interleaved call by call (every pass calls each side
  once, in a new random order), in rounds. Subjects: a named
  ``auth_profile``; no credential source, so the provider's connected
  profiles are *selected* (1 and 3 of them); a call for ``agent="bot"`` whose
  own profile overrides the named global one (against ``api_key_env`` called
  for the same agent); an OAuth profile that is not due for a refresh (the
  `CallGate` check). Profiles are connected into a
  `MemorySecretStore` with a temporary ``home``.
- The credential lookup alone (the pipeline's lookup, and
  `ProfileCredentials.named` / ``selected``) and the gate check alone
  (`CallGate.ahead`), microseconds per call.
- Keyring reads: a `KeyringSecretStore` over the ``keyring`` library with a
  counting in-process backend; the reads over N calls of a client that did
  not store the key itself (expected: 1 on the first call, 0 after), after the
  profile is rotated by another writer, after an in-process OAuth refresh, and
  after a revoke.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

import palyra
from bench._common import banner, median, percentile, table, verdict

TARGET_US = 5.0
ENV = "PALYRA_BENCH_AUTH_KEY"
KEYS = {
    "env": "sk-bench-env-0123456789abcdef",
    "profile": "sk-bench-profile-0123456789abcdef",
    "bot": "sk-bench-bot-0123456789abcdef",
    "oauth": "at-bench-oauth-0123456789abcdef",
}
REPLY = {
    "id": "c",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
}
TOKEN_URL = "https://auth.example.com/oauth/token"
MESSAGES = [{"role": "user", "content": "hi"}]
GATE_ENV = "api_key_env (profile file never read)"


class _Upstream:
    """A MockTransport handler: a canned chat reply, the last credential
    sent, and token-endpoint answers (counted)."""

    def __init__(self) -> None:
        self.last_auth: str | None = None
        self.token_requests = 0
        self.issued = 0
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            self.token_requests += 1
            self.issued += 1
            return httpx.Response(
                200,
                json={
                    "access_token": f"at-bench-refreshed-{self.issued:04d}",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_token": f"rt-bench-refreshed-{self.issued:04d}",
                },
            )
        self.last_auth = request.headers.get("authorization")
        return httpx.Response(200, json=REPLY)


def _config(**provider: Any) -> dict[str, Any]:
    return {
        "providers": [{"id": "up", "kind": "openai", **provider}],
        "models": [{"id": "m", "provider": "up"}],
    }


def _client(
    home: Path, upstream: _Upstream, vault: palyra.SecretStore | None = None, **kw: Any
) -> palyra.Palyra:
    return palyra.Palyra(
        _config(**kw),
        transport=upstream.transport,
        secrets=vault if vault is not None else palyra.MemorySecretStore(),
        home=home,
    )


def _oauth_profile(client: palyra.Palyra, profile_id: str, token: str) -> None:
    """An OAuth profile whose token expires in 30 days: never due here."""
    now = datetime.now(UTC).replace(microsecond=0)
    profile = palyra.AuthProfile(
        id=profile_id,
        provider="up",
        name="oauth",
        kind="oauth",
        created_at=now,
        updated_at=now,
        token_endpoint=TOKEN_URL,
        client_id="palyra-bench",
        expires_at=now + timedelta(days=30),
    )
    client.auth._save(profile, {"access_token": token, "refresh_token": "rt-bench-0"})


# ------------------------------------------------------------------ subjects


class _Subjects:
    """One client per way of getting a credential, each over its own
    MockTransport, all in temporary homes."""

    def __init__(self, root: Path) -> None:
        self.upstreams: dict[str, _Upstream] = {}
        self.clients: dict[str, palyra.Palyra] = {}
        self.agents: dict[str, str | None] = {}

        def add(name: str, agent: str | None = None, **kw: Any) -> palyra.Palyra:
            home = root / f"home-{len(self.clients)}"
            home.mkdir()
            upstream = self.upstreams[name] = _Upstream()
            client = self.clients[name] = _client(home, upstream, **kw)
            self.agents[name] = agent
            return client

        add("api_key_env", api_key_env=ENV)
        add("api_key_env, agent=bot", agent="bot", api_key_env=ENV)
        named = add("auth_profile", auth_profile="up-default")
        named.auth.connect_api_key("up", KEYS["profile"], validate=False)
        one = add("selected, 1 profile")
        one.auth.connect_api_key("up", KEYS["profile"], validate=False)
        three = add("selected, 3 profiles")
        for label in ("a", "b", "c"):
            three.auth.connect_api_key(
                "up", f"{KEYS['profile']}-{label}", name=label, validate=False
            )
        agent = add("auth_profile, agent=bot", agent="bot", auth_profile="up-default")
        agent.auth.connect_api_key("up", KEYS["profile"], validate=False)
        agent.auth.connect_api_key("up", KEYS["bot"], validate=False, scope="agent:bot")
        oauth = add("OAuth auth_profile, not due", auth_profile="up-oauth")
        _oauth_profile(oauth, "up-oauth", KEYS["oauth"])

    def baseline(self, name: str) -> str:
        return "api_key_env, agent=bot" if self.agents[name] == "bot" else "api_key_env"

    def call(self, name: str) -> Callable[[], object]:
        client, agent = self.clients[name], self.agents[name]
        if agent is None:
            return lambda: client.chat(MESSAGES)
        return lambda: client.chat(MESSAGES, agent=agent)

    def check(self) -> dict[str, Any]:
        """What each side sent (after the warm-up): the intended credential."""
        expected = {
            "api_key_env": KEYS["env"],
            "api_key_env, agent=bot": KEYS["env"],
            "auth_profile": KEYS["profile"],
            "selected, 1 profile": KEYS["profile"],
            "auth_profile, agent=bot": KEYS["bot"],
            "OAuth auth_profile, not due": KEYS["oauth"],
        }
        for name, key in expected.items():
            sent = self.upstreams[name].last_auth
            if sent != f"Bearer {key}":
                raise RuntimeError(f"{name}: sent {sent!r}, not the expected key")
        # Selection among three rotates (least recently used first).
        three, used = self.call("selected, 3 profiles"), set()
        for _ in range(6):
            three()
            used.add(self.upstreams["selected, 3 profiles"].last_auth)
        oauth = self.upstreams["OAuth auth_profile, not due"]
        return {
            "keys_used_by_3_profiles": len(used),
            "token_requests": oauth.token_requests,
        }

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _interleaved(
    subjects: _Subjects, rounds: int, per_round: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Per-call microseconds of every side, interleaved call by call: each
    pass calls every side once, in a new random order (seeded), so the
    machine's load moves every side alike and no side always follows the
    same other one. Per round and side: the mean and the median of its
    ``per_round`` calls."""
    names = list(subjects.clients)
    calls = [(name, subjects.call(name)) for name in names]
    for _ in range(warmup):
        for _, fn in calls:
            fn()
    clock = time.perf_counter
    samples: dict[str, list[float]] = {name: [] for name in names}
    means: dict[str, list[float]] = {name: [] for name in names}
    medians: dict[str, list[float]] = {name: [] for name in names}
    shuffle = random.Random(10).sample
    width = len(calls)
    for _ in range(rounds):
        block: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(per_round):
            for name, fn in shuffle(calls, width):
                t = clock()
                fn()
                block[name].append((clock() - t) * 1e6)
        for name, values in block.items():
            samples[name] += values
            means[name].append(sum(values) / per_round)
            medians[name].append(median(values))
    return {"calls": samples, "means": means, "medians": medians}


def _end_to_end(
    subjects: _Subjects, rounds: int, per_round: int, warmup: int
) -> list[dict[str, Any]]:
    timed = _interleaved(subjects, rounds, per_round, warmup)
    rows = []
    for name in subjects.clients:
        base = subjects.baseline(name)
        calls, base_calls = timed["calls"][name], timed["calls"][base]
        diffs = [
            s - b
            for s, b in zip(timed["medians"][name], timed["medians"][base], strict=True)
        ]
        mean_diffs = [
            s - b
            for s, b in zip(timed["means"][name], timed["means"][base], strict=True)
        ]
        rows.append(
            {
                "subject": name,
                "baseline": base,
                "median_us": median(calls),
                "p90_us": percentile(calls, 90),
                "added_us_median": median(diffs),
                "added_us_p10": percentile(diffs, 10),
                "added_us_p90": percentile(diffs, 90),
                "added_us_of_means": median(mean_diffs),
                "added_us_diff_of_medians": median(calls) - median(base_calls),
            }
        )
    return rows


# --------------------------------------------------------------- alone


def _micro(
    subjects: list[tuple[str, Callable[[], object]]], rounds: int, repeat: int
) -> dict[str, float]:
    """Median microseconds per call of each function, interleaved rounds."""
    clock = time.perf_counter
    runs: dict[str, list[float]] = {name: [] for name, _ in subjects}
    for _, fn in subjects:
        for _ in range(1000):
            fn()
    for _ in range(rounds):
        for name, fn in subjects:
            t = clock()
            for _ in range(repeat):
                fn()
            runs[name].append((clock() - t) / repeat * 1e6)
    return {name: median(values) for name, values in runs.items()}


def _alone(
    subjects: _Subjects, rounds: int, repeat: int
) -> dict[str, dict[str, float]]:
    from palyra._auth import ProfileCredentials
    from palyra._core import NOBODY, CallContext

    def lookup(name: str) -> Callable[[], object]:
        client = subjects.clients[name]
        model = client._registry.resolve(None, "chat")
        agent = subjects.agents[name]
        caller = NOBODY if agent is None else NOBODY.merged(agent)
        ctx = CallContext("chat", model, caller)
        credential = client._pipeline._credential
        return lambda: credential(ctx, model)

    def direct(name: str, how: str) -> Callable[[], object]:
        client = subjects.clients[name]
        provider = client._registry.resolve(None, "chat").provider
        profiles = ProfileCredentials(client.auth._book, lambda exc: "other")
        agent = subjects.agents[name]
        fn = profiles.named if how == "named" else profiles.selected
        return lambda: fn(provider, agent)

    def gate(name: str) -> Callable[[], object]:
        client, agent = subjects.clients[name], subjects.agents[name]
        assert client._gate is not None
        ahead = client._gate.ahead
        return lambda: ahead(agent)

    lookups = [(name, lookup(name)) for name in subjects.clients]
    directs = [
        ("ProfileCredentials.named", direct("auth_profile", "named")),
        ("ProfileCredentials.selected, 1 profile", direct("selected, 1 profile", "s")),
        (
            "ProfileCredentials.selected, 3 profiles",
            direct("selected, 3 profiles", "s"),
        ),
        (
            "ProfileCredentials.named, agent=bot",
            direct("auth_profile, agent=bot", "named"),
        ),
        (
            "ProfileCredentials.named, OAuth",
            direct("OAuth auth_profile, not due", "named"),
        ),
    ]
    gates = [
        (GATE_ENV, gate("api_key_env")),
        ("auth_profile, API key", gate("auth_profile")),
        ("OAuth auth_profile, not due", gate("OAuth auth_profile, not due")),
        ("  for scale: time.time()", time.time),
    ]
    return {
        "lookup_us": _micro(lookups + directs, rounds, repeat),
        "gate_us": _micro(gates, rounds, repeat),
    }


# ------------------------------------------------------------- the keyring


def _counting_keyring() -> Any:
    """An in-process keyring backend that counts what is asked of it
    (``keyring`` is loaded here, not when the bench modules are imported)."""
    import keyring.backend
    import keyring.errors

    class CountingKeyring(keyring.backend.KeyringBackend):
        priority = 1

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.items: dict[tuple[str, str], str] = {}
            self.reads = 0
            self.writes = 0

        def get_password(self, service: str, username: str) -> str | None:
            self.reads += 1
            return self.items.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.writes += 1
            self.items[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            if self.items.pop((service, username), None) is None:
                raise keyring.errors.PasswordDeleteError("not found")

    return CountingKeyring()


def _keyring_reads(root: Path, calls: int) -> dict[str, Any]:
    """Backend reads of calls through a `KeyringSecretStore`.

    A writer client (its own home) connects the key; its profile file is
    copied to the reader's home, so the reader's book (one per home and
    vault in a process) starts as another process's would: knowing nothing.
    """
    import keyring

    backend = _counting_keyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    service = f"palyra-bench-{os.getpid()}"
    writer_home, reader_home = root / "kr-writer", root / "kr-reader"
    writer_home.mkdir()
    reader_home.mkdir()
    upstream = _Upstream()
    result: dict[str, Any] = {"calls": calls, "service": service}

    def reads(fn: Callable[[], object], n: int = 1) -> int:
        before = backend.reads
        for _ in range(n):
            fn()
        return int(backend.reads - before)

    def copy() -> None:
        shutil.copy2(writer_home / "auth_profiles.json", reader_home)

    try:
        store = palyra.KeyringSecretStore(service=service)
        writer = _client(writer_home, upstream, store, auth_profile="up-default")
        reader = _client(reader_home, upstream, store, auth_profile="up-default")
        writer.auth.connect_api_key("up", KEYS["profile"], validate=False)
        copy()
        call = lambda: reader.chat(MESSAGES)  # noqa: E731
        result["first_call"] = reads(call)
        result["next_calls"] = reads(call, calls - 1)
        result["sent_stored_key"] = upstream.last_auth == f"Bearer {KEYS['profile']}"
        result["writer_calls"] = reads(lambda: writer.chat(MESSAGES), calls)

        # Rotated by another writer: the reader sees the file change (it looks
        # at its mtime at most once a second) and reads the new key once.
        writer.auth.connect_api_key("up", KEYS["bot"], validate=False)
        result["writer_after_rotation_calls"] = reads(
            lambda: writer.chat(MESSAGES), calls
        )
        copy()
        time.sleep(1.05)
        result["after_rotation_first_call"] = reads(call)
        result["after_rotation_next_calls"] = reads(call, calls - 1)
        result["sent_rotated_key"] = upstream.last_auth == f"Bearer {KEYS['bot']}"

        # OAuth, refreshed in this process: the new token is kept in memory
        # as it is written (expected: no read after the refresh).
        oauth = _client(reader_home, upstream, store, auth_profile="up-oauth")
        _oauth_profile(oauth, "up-oauth", KEYS["oauth"])
        ocall = lambda: oauth.chat(MESSAGES)  # noqa: E731
        result["oauth_calls"] = reads(ocall, calls)
        result["oauth_refresh"] = reads(lambda: oauth.auth.refresh("up-oauth"))
        result["oauth_after_refresh_calls"] = reads(ocall, calls)
        result["sent_refreshed_token"] = (
            upstream.last_auth == "Bearer at-bench-refreshed-0001"
        )

        # Revoked through the reader: the next call fails, nothing cached is used.
        reader.auth.revoke("up-default")
        try:
            reader.chat(MESSAGES)
        except palyra.CredentialError:
            result["after_revoke"] = "CredentialError"
        else:
            result["after_revoke"] = "a call went through"
        for c in (writer, reader, oauth):
            c.close()
    finally:
        keyring.set_keyring(previous)
    result["backend"] = f"{type(backend).__module__}.{type(backend).__name__}"
    return result


# ---------------------------------------------------------------------- run


def run(quick: bool) -> dict[str, Any]:
    """Measure, print the tables, return the JSON section."""
    rounds, per_round, warmup = (6, 100, 100) if quick else (40, 300, 300)
    micro_rounds, repeat = (5, 2000) if quick else (15, 10_000)
    keyring_calls = 100 if quick else 1000
    banner(
        f"auth: a call through auth profiles vs api_key_env, MockTransport,"
        f" {rounds} rounds x {per_round} calls per side, interleaved call by call"
    )
    saved_env = os.environ.get(ENV)
    os.environ[ENV] = KEYS["env"]
    root = Path(tempfile.mkdtemp(prefix="palyra-bench-auth-"))
    subjects = _Subjects(root)
    try:
        rows = _end_to_end(subjects, rounds, per_round, warmup)
        checks = subjects.check()
        alone = _alone(subjects, micro_rounds, repeat)
        reads = _keyring_reads(root, keyring_calls)
    finally:
        subjects.close()
        shutil.rmtree(root, ignore_errors=True)
        if saved_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved_env

    print(
        table(
            [
                "chat over MockTransport",
                "us/call",
                "p90",
                "added",
                "p10",
                "p90",
                "of means",
            ],
            [
                [
                    r["subject"],
                    r["median_us"],
                    r["p90_us"],
                    "" if r["subject"] == r["baseline"] else r["added_us_median"],
                    "" if r["subject"] == r["baseline"] else r["added_us_p10"],
                    "" if r["subject"] == r["baseline"] else r["added_us_p90"],
                    "" if r["subject"] == r["baseline"] else r["added_us_of_means"],
                ]
                for r in rows
            ],
        )
    )
    print(
        "added: median over rounds of (the side's median call - the baseline's"
        " median call in the same round), us, p10 and p90 over rounds; of means:"
        " the same with each round's mean call; agent=bot rows against"
        " api_key_env with agent=bot"
    )
    named = next(r for r in rows if r["subject"] == "auth_profile")
    added = named["added_us_median"]
    print(
        f"auth_profile vs api_key_env: {added:+.2f} us per call"
        f" (p10 {named['added_us_p10']:+.2f}, p90 {named['added_us_p90']:+.2f};"
        f" difference of per-call medians {named['added_us_diff_of_medians']:+.2f});"
        f" target <= {TARGET_US:g} us: {verdict(added, TARGET_US)}"
    )
    print(
        f"checks: each side sent its own credential; 3 profiles selected in turn"
        f" used {checks['keys_used_by_3_profiles']} keys over 6 calls; token"
        f" requests by the OAuth profile not due: {checks['token_requests']}"
    )
    print()
    print(table(["credential lookup alone", "us"], list(alone["lookup_us"].items())))
    print()
    print(table(["CallGate.ahead alone", "us"], list(alone["gate_us"].items())))
    lookup, gate = alone["lookup_us"], alone["gate_us"]
    parts = {
        "lookup": lookup["auth_profile"] - lookup["api_key_env"],
        "gate": gate["auth_profile, API key"] - gate[GATE_ENV],
    }
    print(
        f"the parts that differ, timed alone: lookup {parts['lookup']:+.2f} us,"
        f" gate check {parts['gate']:+.2f} us, together"
        f" {sum(parts.values()):+.2f} us (target <= {TARGET_US:g} us:"
        f" {verdict(sum(parts.values()), TARGET_US)})"
    )
    print()
    n = reads["calls"]
    print(
        f"keyring reads ({reads['backend']}, {n} calls each): first call"
        f" {reads['first_call']}, next {n - 1} calls {reads['next_calls']}"
        f" (stored key sent: {reads['sent_stored_key']});"
        f" the client that stored the key, {n} calls: {reads['writer_calls']}"
        f" ({reads['writer_after_rotation_calls']} after it rotated the key)"
    )
    print(
        f"  rotated by another writer: first call {reads['after_rotation_first_call']},"
        f" next {n - 1} {reads['after_rotation_next_calls']}"
        f" (new key sent: {reads['sent_rotated_key']});"
        f" OAuth: {n} calls {reads['oauth_calls']}, refresh {reads['oauth_refresh']},"
        f" {n} calls after {reads['oauth_after_refresh_calls']}"
        f" (new token sent: {reads['sent_refreshed_token']});"
        f" after revoke: {reads['after_revoke']}"
    )
    if reads["oauth_after_refresh_calls"] or reads["writer_after_rotation_calls"]:
        print(
            "  note: after this process's own refresh or rotation, the next call"
            " reads the keyring once (the book re-reads the profile file, sees a"
            " new updated_at and forgets the secrets it had just kept)"
        )
    no_reads = reads["first_call"] <= 1 and reads["next_calls"] == 0
    print(f"no keyring read per request: {'PASS' if no_reads else 'FAIL'}")
    return {
        "target_us": TARGET_US,
        "rounds": rounds,
        "calls_per_round": per_round,
        "warmup": warmup,
        "end_to_end": rows,
        "auth_profile_added_us": added,
        "verdict": verdict(added, TARGET_US),
        "checks": checks,
        "lookup_us": alone["lookup_us"],
        "gate_us": alone["gate_us"],
        "parts_added_us": parts,
        "keyring_reads": reads,
        "keyring_verdict": "PASS" if no_reads else "FAIL",
    }
