"""A call the client makes again after a 401 (its OAuth token refreshed) is
one call to its events: one start, one end (or one error), one id; against
a real authorization server and upstream on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import palyra
from tests.auth.authserver import AuthServer
from tests.auth.test_oauth_client import HI, oauth_config, sign_in
from tests.observe.test_events import Events
from tests.upstream import Upstream

pytestmark = pytest.mark.anyio


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture
def provider(auth: AuthServer) -> Iterator[Upstream]:
    with Upstream(api_key=auth.valid) as server:
        yield server


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_a_call_made_again_after_a_401_is_one_call(
    driver: str, auth: AuthServer, provider: Upstream, tmp_path: Path
) -> None:
    events = Events()
    c = palyra.Palyra(
        oauth_config(auth, provider),
        secrets=palyra.MemorySecretStore(),
        home=tmp_path,
        on_event=events,
        ledger=False,
    )
    sign_in(c, auth)
    auth.expire_access_tokens()
    c.chat(HI) if driver == "sync" else await c.achat(HI)
    assert auth.token_requests["refresh_token"] == 1  # it was made twice
    # Refused again after its refresh: the 401 is the call's end.
    provider.api_key = lambda token: False
    with pytest.raises(palyra.AuthenticationError):
        c.chat(HI) if driver == "sync" else await c.achat(HI)
    assert c.flush(5)
    calls = events.by_call()
    assert list(calls.values()) == [["start", "end"], ["start", "error"]]
    assert events.seen[-1].error_class == "AuthenticationError"
    assert events.seen[1].attempts == 1  # the served flow's own attempts
    await c.aclose()
