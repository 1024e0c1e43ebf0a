"""Edge cases found in review: each failed on the first implementation."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

import palyra
from tests.helpers import completion_json

HI = [{"role": "user", "content": "hi"}]
BASE = "https://api.example.test/v1"
TOKEN = "https://auth.example.test/token"


def _config() -> dict:
    return {
        "providers": [
            {
                "id": "up",
                "kind": "openai",
                "base_url": BASE,
                "max_retries": 0,
                "oauth": {
                    "client_id": "cid",
                    "authorize_url": "https://auth.example.test/authorize",
                    "token_url": TOKEN,
                    "redirect_uri": "http://127.0.0.1:8765/callback",
                },
            }
        ],
        "models": [{"id": "m", "provider": "up"}],
        "resilience": {"circuit_breakers": False},
    }


class Server:
    def __init__(self) -> None:
        self.grants: list[str] = []
        self.first_expires_in: int | None = 60  # inside the 5-minute window
        self.refresh_expires_in: int | None = None  # the server says nothing

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.grants.append(form["grant_type"])
            n = len(self.grants)
            body = {
                "access_token": f"at{n}",
                "refresh_token": f"rt{n}",
                "token_type": "Bearer",
            }
            ttl = self.first_expires_in if n == 1 else self.refresh_expires_in
            if ttl is not None:
                body["expires_in"] = ttl
            return httpx.Response(200, json=body)
        if request.url.path.endswith("/chat/completions"):
            return httpx.Response(200, json=completion_json("ok"))
        return httpx.Response(404)


def _signed_in(tmp_path: Path, server: Server) -> palyra.Palyra:
    client = palyra.Palyra(
        _config(),
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        transport=httpx.MockTransport(server),
    )
    attempt = client.auth.start_oauth("up", profile_id="p")
    client.auth.complete_oauth(f"{attempt.redirect_uri}?code=c&state={attempt.state}")
    return client


def test_a_refresh_without_expires_in_is_not_repeated_on_every_call(
    tmp_path: Path,
) -> None:
    server = Server()
    client = _signed_in(tmp_path, server)
    for _ in range(5):
        client.chat(HI, model="m")
    # one code exchange, one refresh (the first token was inside the window)
    assert server.grants.count("refresh_token") == 1, server.grants


def test_a_flight_with_a_waiter_from_a_closed_loop_still_lands() -> None:
    from palyra._auth.steps import Flight

    flight = Flight()
    # a task of another event loop joined and gave up (its deadline passed)
    assert asyncio.run(flight.await_landing(0.01)) is False
    flight.land()  # the leader lands: must not raise, must wake the rest
    assert flight.landed


def test_a_cancelled_leader_does_not_keep_the_refresh_lock(tmp_path: Path) -> None:
    """The leader's task is cancelled while a worker thread waits for the
    profile's lock; once the thread gets it, nobody ever releases it."""
    from palyra._auth.locks import hold
    from palyra._auth.refresh import refresh_profile
    from palyra._auth.remote import Deadline
    from palyra._auth.steps import adrive

    server = Server()
    client = _signed_in(tmp_path, server)
    book = client.auth._book
    lock_path = tmp_path / "locks" / "refresh.p.lock"
    busy = threading.Event()

    def other_holder() -> None:  # another caller holds the lock for 0.3 s
        with hold(lock_path, 1.0):
            busy.set()
            time.sleep(0.3)

    holder = threading.Thread(target=other_holder)
    holder.start()
    busy.wait()

    async def main() -> None:
        task = asyncio.create_task(
            adrive(
                refresh_profile(book, "p", Deadline(5.0), force=True), lambda step: None
            )  # never reached
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    holder.join()
    time.sleep(0.2)  # the worker thread has taken the lock by now
    with hold(lock_path, 0.5):  # AuthProfileError: held until a gc.collect()
        pass


def test_a_provider_that_keeps_refusing_costs_one_refresh_per_call_at_most(
    tmp_path: Path,
) -> None:
    server = Server()
    server.first_expires_in = server.refresh_expires_in = 3600
    refused = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            refused.append(request.headers["authorization"])
            return httpx.Response(401, json={"error": {"message": "no scope"}})
        return server(request)

    client = palyra.Palyra(
        _config(),
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        transport=httpx.MockTransport(handler),
    )
    attempt = client.auth.start_oauth("up", profile_id="p")
    client.auth.complete_oauth(f"{attempt.redirect_uri}?code=c&state={attempt.state}")
    for _ in range(3):
        with pytest.raises(palyra.AuthenticationError):
            client.chat(HI, model="m")
    # each call: one 401, one refresh, one retry at most
    assert server.grants.count("refresh_token") <= 3, server.grants


@pytest.mark.anyio
async def test_the_async_call_path_reads_no_vault_on_the_event_loop(
    tmp_path: Path,
) -> None:
    on_loop: list[bool] = []

    class Watched(palyra.MemorySecretStore):
        def get(self, key: str) -> str | None:
            try:
                asyncio.get_running_loop()
                on_loop.append(True)
            except RuntimeError:
                on_loop.append(False)
            return super().get(key)

    vault = Watched()
    setup = palyra.Palyra(
        _config(),
        secrets=vault,
        home=tmp_path,
        transport=httpx.MockTransport(Server()),
    )
    setup.auth.connect_api_key("up", "sk-test-1234567890", validate=False)
    # a fresh process: a new book, secrets not read yet
    from palyra._auth import book as book_module

    book_module._OTHER_BOOKS.clear()
    on_loop.clear()
    client = palyra.Palyra(
        _config(),
        secrets=vault,
        home=tmp_path,
        transport=httpx.MockTransport(Server()),
    )
    await client.achat(HI, model="m")
    assert True not in on_loop, on_loop


def test_a_profile_revoked_while_a_call_selects_is_not_a_key_error(
    tmp_path: Path,
) -> None:
    client = palyra.Palyra(
        _config(),
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        transport=httpx.MockTransport(Server()),
    )
    client.auth.connect_api_key("up", "sk-aaaaaaaaaaaa", name="a", validate=False)
    client.auth.connect_api_key("up", "sk-bbbbbbbbbbbb", name="b", validate=False)
    client.chat(HI, model="m")  # the book is read
    book = client.auth._book
    plain = book.candidates

    def racing(provider: str, agent: str | None) -> list[str]:
        ids = plain(provider, agent)
        # another thread revokes one of them right now
        worker = threading.Thread(target=client.auth.revoke, args=("up-a",))
        worker.start()
        worker.join()
        return ids

    book.candidates = racing  # type: ignore[method-assign]
    client.chat(HI, model="m")  # KeyError: 'up-a' today


def test_a_cancelled_alogin_oauth_does_not_hold_up_the_loop_shutdown(
    tmp_path: Path,
) -> None:
    client = palyra.Palyra(
        _config(),
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        transport=httpx.MockTransport(Server()),
    )

    async def main() -> None:
        task = asyncio.create_task(
            client.auth.alogin_oauth(
                "up",
                open_browser=lambda url: None,
                timeout=4.0,
                redirect_uri="http://127.0.0.1:0/callback",
            )
        )
        await asyncio.sleep(0.3)
        task.cancel()  # Ctrl-C, or an asyncio.timeout() around it
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(main())  # waits for the worker thread still in listener.wait
    assert time.monotonic() - started < 2.0


def test_a_token_without_refresh_token_is_not_retried_on_every_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reads: list[str] = []

    class Counting(palyra.MemorySecretStore):
        def get(self, key: str) -> str | None:
            reads.append(key)
            return super().get(key)

    def no_refresh(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN:  # an access token only, 60 s left
            return httpx.Response(
                200,
                json={"access_token": "at1", "token_type": "Bearer", "expires_in": 60},
            )
        return httpx.Response(200, json=completion_json("ok"))

    client = palyra.Palyra(
        _config(),
        secrets=Counting(),
        home=tmp_path,
        transport=httpx.MockTransport(no_refresh),
    )
    attempt = client.auth.start_oauth("up", profile_id="p")
    client.auth.complete_oauth(f"{attempt.redirect_uri}?code=c&state={attempt.state}")
    reads.clear()
    with caplog.at_level("WARNING", logger="palyra"):
        for _ in range(5):
            client.chat(HI, model="m")
    assert reads.count("p:refresh_token") <= 1, reads  # 5 keyring reads today
    assert len(caplog.records) <= 1, [r.getMessage() for r in caplog.records]
