"""The profile model: ids, scopes, names, secret references and health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import palyra
from palyra._auth.profiles import (
    AuthProfile,
    check_profile_id,
    check_scope,
    health_of,
    new_profile_id,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _profile(**fields: object) -> AuthProfile:
    base: dict[str, object] = {
        "id": "openai-work",
        "provider": "openai",
        "name": "work",
        "kind": "api_key",
        "created_at": NOW,
        "updated_at": NOW,
    }
    return AuthProfile.model_validate({**base, **fields})


@pytest.mark.parametrize("raw", ["Work", " work ", "a.b_c-d", "x" * 128, "0"])
def test_profile_ids_are_trimmed_and_lower_cased(raw: str) -> None:
    assert check_profile_id(raw) == raw.strip().lower()


@pytest.mark.parametrize("raw", ["", "a b", "a/b", "a:b", "x" * 129, "é", 3, None])
def test_bad_profile_ids_are_named(raw: object) -> None:
    with pytest.raises(palyra.InvalidRequestError, match=r"^profile_id: "):
        check_profile_id(raw)


@pytest.mark.parametrize("raw", ["global", "agent:bot", "agent:a.b@c:d"])
def test_scopes(raw: str) -> None:
    assert check_scope(raw) == raw


@pytest.mark.parametrize("raw", ["", "Global", "agent:", "agent: x", "team:x", None])
def test_bad_scopes_are_named(raw: object) -> None:
    with pytest.raises(palyra.InvalidRequestError, match=r"^scope: "):
        check_scope(raw)


def test_the_model_is_frozen_and_holds_references_only() -> None:
    profile = _profile(kind="oauth", token_endpoint="https://auth.example/token")
    with pytest.raises(ValueError, match="frozen"):
        profile.name = "other"  # type: ignore[misc]
    assert profile.secret_refs == {
        "access_token": "openai-work:access_token",
        "refresh_token": "openai-work:refresh_token",
    }
    assert _profile().secret_refs == {"api_key": "openai-work:api_key"}
    assert "health" not in profile.record()
    assert AuthProfile.model_validate({**profile.record(), "health": "ok"}) == (
        profile.model_copy(update={"health": "ok"})
    )


def test_agent_comes_from_the_scope() -> None:
    assert _profile().agent is None
    assert _profile(scope="agent:bot").agent == "bot"
    with pytest.raises(ValueError, match="scope"):
        _profile(scope="team:x")


def test_generated_ids_are_readable_and_unused() -> None:
    assert new_profile_id("openai", "My Work Key!", set()) == "openai-my-work-key"
    assert new_profile_id("openai", "x", {"openai-x"}) == "openai-x-2"
    assert new_profile_id("openai", "***", set()) == "openai-default"


def test_health() -> None:
    key = _profile()
    assert health_of(key, {"api_key"}) == "static"
    assert health_of(key, set()) == "missing"
    both = {"access_token", "refresh_token"}
    oauth = _profile(kind="oauth")
    assert health_of(oauth, both, NOW) == "ok"  # no expiry given
    assert health_of(oauth, {"refresh_token"}, NOW) == "missing"
    soon = oauth.model_copy(update={"expires_at": NOW + timedelta(minutes=15)})
    assert health_of(soon, both, NOW) == "expiring"
    later = oauth.model_copy(update={"expires_at": NOW + timedelta(minutes=16)})
    assert health_of(later, both, NOW) == "ok"
    past = oauth.model_copy(update={"expires_at": NOW})
    assert health_of(past, both, NOW) == "expired"
    failed = later.model_copy(update={"refresh_failures": 1})
    assert health_of(failed, both, NOW) == "refresh_failed"
