"""API tokens (issue 13, first part): issued once, kept hashed in a 0600
SQLite file, verified in constant time by id and digest, refused at once when
revoked (also by another process) or expired, scoped, rate limited, and every
bad argument a typed error."""

from __future__ import annotations

import asyncio
import hmac
import multiprocessing
import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import palyra
from palyra._access import TokenService

pytestmark = [pytest.mark.anyio]


class Clocks:
    """A wall clock and a monotonic one the test moves by hand."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 12, 2, 12, tzinfo=UTC)
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def service(tmp_path: Path, clocks: Clocks | None = None) -> TokenService:
    if clocks is None:
        return TokenService(lambda: tmp_path / "tokens.sqlite3")
    return TokenService(
        lambda: tmp_path / "tokens.sqlite3",
        now=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
    )


def test_a_secret_is_shown_once_and_only_its_digest_is_kept(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    info, secret = tokens.create("ci", scopes=["chat", "models"], agent="bot")
    assert secret.startswith(f"pk-palyra-{info.id}_")
    assert len(secret) == len("pk-palyra-") + 20 + 1 + 43
    assert info.scopes == ("chat", "models")
    assert info.agent == "bot"
    assert secret not in repr(info)
    assert secret not in info.model_dump_json()
    assert secret not in repr(tokens.list())
    tokens.close()
    raw = (tmp_path / "tokens.sqlite3").read_bytes()
    assert secret.encode() not in raw
    assert secret.split("_", 2)[-1].encode() not in raw  # nor its random part
    with sqlite3.connect(tmp_path / "tokens.sqlite3") as db:
        (kept,) = db.execute("SELECT digest FROM tokens").fetchone()
    import hashlib

    assert kept == hashlib.sha256(secret.encode()).hexdigest()


def test_the_file_is_private_and_made_only_when_first_used(tmp_path: Path) -> None:
    client = palyra.Palyra(home=tmp_path / "home", ledger=False)
    path = client.tokens.path
    assert not path.exists()  # building the client touched nothing
    client.tokens.list()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    client.close()


def test_verify_finds_the_token_and_compares_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = service(tmp_path)
    info, secret = tokens.create("app")
    seen: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr("palyra._access.tokens.hmac.compare_digest", spy)
    assert tokens.verify(secret, "chat") == info
    assert len(seen) == 1
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(palyra.APITokenError) as caught:
        tokens.verify(wrong)
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_token")
    assert len(seen) == 2  # the same comparison, whatever differs
    assert secret not in str(caught.value)
    assert wrong not in str(caught.value)


@pytest.mark.parametrize(
    "presented",
    [
        None,
        "",
        "Bearer x",
        "pk-palyra-",
        "pk-palyra-tok_0000000000000000_short",
        42,
        "x" * 10_000,
    ],
)
def test_malformed_and_unknown_secrets_are_401(tmp_path: Path, presented: Any) -> None:
    tokens = service(tmp_path)
    tokens.create("app")
    with pytest.raises(palyra.APITokenError) as caught:
        tokens.verify(presented)
    assert caught.value.status == 401
    _, other = TokenService(lambda: tmp_path / "elsewhere.sqlite3").create("x")
    with pytest.raises(palyra.APITokenError, match="not valid"):
        tokens.verify(other)  # well formed, but not this file's


def test_scopes_are_checked(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    _, secret = tokens.create("embedder", scopes=("embeddings",))
    tokens.verify(secret, "embeddings")
    for scope in ("chat", "audio", "models"):
        with pytest.raises(palyra.APITokenError) as caught:
            tokens.verify(secret, scope)
        assert (caught.value.status, caught.value.code) == (403, "missing_scope")


def test_admin_is_given_only_when_asked_for(tmp_path: Path) -> None:
    """The console's scope: never among the defaults, and an admin token
    calls nothing else unless it says so."""
    tokens = service(tmp_path)
    info, plain = tokens.create("app")
    assert info.scopes == ("chat", "embeddings", "audio", "models")
    with pytest.raises(palyra.APITokenError) as caught:
        tokens.verify(plain, "admin")
    assert (caught.value.status, caught.value.code) == (403, "missing_scope")
    info, admin = tokens.create("ops", scopes=["admin"])
    assert info.scopes == ("admin",)
    tokens.verify(admin, "admin")
    with pytest.raises(palyra.APITokenError):
        tokens.verify(admin, "chat")


def test_a_revoked_token_is_refused_at_once(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    info, secret = tokens.create("app")
    other = service(tmp_path)  # another client on the same file
    other.verify(secret)
    revoked = tokens.revoke(info.id)
    assert revoked.revoked_at is not None
    for where in (tokens, other):
        with pytest.raises(palyra.APITokenError) as caught:
            where.verify(secret)
        assert (caught.value.status, caught.value.code) == (401, "revoked_api_token")
    assert tokens.revoke(info.id).revoked_at == revoked.revoked_at  # once
    with pytest.raises(palyra.APITokenError) as missing:
        tokens.revoke("tok_0123456789abcdef")
    assert (missing.value.status, missing.value.code) == (404, "token_not_found")
    with pytest.raises(palyra.APITokenError):
        tokens.revoke("../etc/passwd")


def _revoke_in_child(path: str, token_id: str) -> None:
    TokenService(lambda: Path(path)).revoke(token_id)


def test_a_token_revoked_by_another_process_is_refused(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    info, secret = tokens.create("app")
    tokens.verify(secret)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(
        target=_revoke_in_child, args=(str(tmp_path / "tokens.sqlite3"), info.id)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    with pytest.raises(palyra.APITokenError, match="revoked"):
        tokens.verify(secret)


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    clocks = Clocks()
    tokens = service(tmp_path, clocks)
    info, secret = tokens.create("temp", expires_at=clocks.wall + timedelta(hours=1))
    tokens.verify(secret)
    assert info.active(clocks.wall)
    clocks.advance(3600)
    with pytest.raises(palyra.APITokenError) as caught:
        tokens.verify(secret)
    assert (caught.value.status, caught.value.code) == (401, "expired_api_token")
    assert not tokens.list()[0].active(clocks.wall)


def test_a_token_s_rate_limit_has_a_retry_after(tmp_path: Path) -> None:
    clocks = Clocks()
    tokens = service(tmp_path, clocks)
    _, secret = tokens.create("slow", rate_limit=3)
    _, free = tokens.create("free")
    for _ in range(3):
        tokens.verify(secret)
    clocks.advance(20)
    with pytest.raises(palyra.APITokenError) as caught:
        tokens.verify(secret)
    assert (caught.value.status, caught.value.code) == (429, "rate_limit_exceeded")
    assert caught.value.retry_after == pytest.approx(40)
    for _ in range(50):
        tokens.verify(free)  # no limit, and not counted against the other
    clocks.advance(40)
    tokens.verify(secret)  # a new window


BAD: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": "x" * 200}, "name"),
    ({"name": "a\nb"}, "name"),
    ({"name": 3}, "name"),
    ({"scopes": ()}, "scopes"),
    ({"scopes": "chat"}, "scopes"),
    ({"scopes": ["chat", "root"]}, "scopes"),
    ({"agent": "bad agent"}, "agent"),
    ({"rate_limit": 0}, "rate_limit"),
    ({"rate_limit": True}, "rate_limit"),
    ({"rate_limit": 1.5}, "rate_limit"),
    ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),  # noqa: DTZ001 (naive)
    ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "expires_at"),
    ({"expires_at": "tomorrow"}, "expires_at"),
]


@pytest.mark.parametrize(("given", "field"), BAD)
def test_bad_arguments_are_typed_errors_naming_the_field(
    tmp_path: Path, given: dict[str, Any], field: str
) -> None:
    tokens = service(tmp_path)
    kwargs = {"name": "ok", **given}
    name = kwargs.pop("name")
    with pytest.raises(palyra.InvalidRequestError, match=f"^{field}"):
        tokens.create(name, **kwargs)
    assert tokens.list() == []  # nothing kept


def test_many_threads_create_and_verify(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    made: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        try:
            for _ in range(20):
                _, secret = tokens.create("t")
                made.append(secret)
                tokens.verify(secret, "chat")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len({*made}) == 160
    assert len(tokens.list()) == 160


async def test_the_async_twins_do_the_same(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    info, secret = await tokens.acreate("async", scopes=["models"])
    assert (await tokens.averify(secret, "models")).id == info.id
    assert [t.id for t in await tokens.alist()] == [info.id]
    results = await asyncio.gather(*(tokens.averify(secret) for _ in range(20)))
    assert {r.id for r in results} == {info.id}
    await tokens.arevoke(info.id)
    with pytest.raises(palyra.APITokenError):
        await tokens.averify(secret)


def test_a_bound_view_shares_the_tokens(tmp_path: Path) -> None:
    client = palyra.Palyra(home=tmp_path, ledger=False)
    _, secret = client.bind(agent="a").tokens.create("shared")
    assert client.tokens.verify(secret).name == "shared"
    client.close()


def test_an_unusable_file_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "tokens.sqlite3").write_bytes(b"not a database" * 100)
    tokens = service(tmp_path)
    with pytest.raises(palyra.PalyraError, match=r"tokens\.sqlite3"):
        tokens.list()
