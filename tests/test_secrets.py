"""A recognisable fake key must never surface: reprs, errors, logs, dumps."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import httpx
import pytest

import palyra
from palyra._providers.base import Target
from tests.conftest import FAKE_KEY
from tests.upstream import Upstream, error_reply

USER = [{"role": "user", "content": "hi"}]


def _config(
    base_url: str = "https://api.openai.com/v1", **extra: Any
) -> dict[str, Any]:
    provider = {"id": "up", "kind": "openai", "base_url": base_url, **extra}
    return {
        "providers": [provider],
        "models": [{"id": "gpt-4o-mini", "provider": "up"}],
    }


def _assert_clean(*texts: object) -> None:
    for text in texts:
        assert FAKE_KEY not in str(text)
        assert FAKE_KEY[10:30] not in str(text)


def _echo_key(request: httpx.Request) -> httpx.Response:
    """An upstream that echoes the credential back in every error field."""
    auth = request.headers.get("authorization", "")
    error = {
        "message": f"Incorrect API key provided: {FAKE_KEY}. Header was '{auth}'",
        "type": "invalid_request_error",
        "code": f"invalid_api_key api_key={FAKE_KEY}",
        "param": auth,
    }
    return httpx.Response(401, json={"error": error}, headers={"x-request-id": "r1"})


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param({"api_key_env": "UP_KEY"}, id="env"),
        pytest.param({"api_key": FAKE_KEY}, id="inline"),
    ],
)
def test_error_from_echoing_upstream_is_redacted(
    credential: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream echoing the key cannot push it into the exception."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", palyra.InsecureConfigWarning)
        client = palyra.Palyra(
            _config(**credential), transport=httpx.MockTransport(_echo_key)
        )
    with client, pytest.raises(palyra.AuthenticationError) as info:
        client.chat(USER)
    error = info.value
    _assert_clean(error, repr(error), error.body, error.code, error.args, client)
    _assert_clean(repr(client.config), client.config.model_dump_json())
    assert error.request_id == "r1"
    assert "<redacted>" in str(error)


def test_logs_never_carry_the_key(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debug logging of palyra, httpx and httpcore stays free of the key."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    with Upstream(api_key=FAKE_KEY) as upstream:
        upstream.enqueue(*[error_reply(500, f"boom with Bearer {FAKE_KEY}")] * 3)
        config = _config(upstream.base_url, api_key_env="UP_KEY", retry_backoff=0.01)
        with palyra.Palyra(config) as client:
            with pytest.raises(palyra.InternalServerError) as info:
                client.chat(USER)
            client.chat(USER)
            with client.stream(USER) as stream:
                list(stream)
    assert any(r.name == "palyra" for r in caplog.records)
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    _assert_clean(caplog.text, info.value)
    for record in caplog.records:
        _assert_clean(record.getMessage(), record.args)


def test_target_and_credential_error_hide_the_key() -> None:
    """The object holding a key for a call prints without it."""
    with palyra.Palyra() as client:
        model = client._registry.resolve(None, "chat")
    target = Target(model, FAKE_KEY)
    _assert_clean(repr(target), str(target))
    error = target.fail(palyra.APIError, f"oops {FAKE_KEY}")
    _assert_clean(error, repr(error))


def test_inline_key_absent_from_config_dumps() -> None:
    """Config reprs and dumps mask an inline key."""
    with pytest.warns(palyra.InsecureConfigWarning):
        config = palyra.PalyraConfig.from_dict(_config(api_key=FAKE_KEY))
    _assert_clean(
        repr(config), str(config), config.model_dump(), config.model_dump_json()
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"Authorization: Bearer {FAKE_KEY}", id="bearer"),
        pytest.param(f"key {FAKE_KEY} rejected", id="sk"),
        pytest.param("https://x/?api_key=abc123secret&y=1", id="query"),
        pytest.param('{"access_token": "tok-abc-123"}', id="json"),
        pytest.param("secret=hunter2; token=abc", id="pairs"),
    ],
)
def test_redaction_patterns(text: str) -> None:
    """Common credential shapes are removed from excerpts."""
    from palyra._utils import excerpt

    cleaned = excerpt(text)
    for secret in (FAKE_KEY, "abc123secret", "tok-abc-123", "hunter2"):
        assert secret not in cleaned
    assert "<redacted>" in cleaned


def test_excerpts_are_bounded() -> None:
    """Long upstream text is cut to a bounded excerpt, multibyte safe."""
    from palyra._utils import excerpt

    cleaned = excerpt("é" * 1000)
    assert cleaned == "é" * 240 + "…"


def test_validation_error_chain_holds_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2xx body echoing the key leaves it nowhere in the exception chain."""
    monkeypatch.setenv("UP_KEY", FAKE_KEY)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"unexpected": f"token={FAKE_KEY}"})

    config = _config(api_key_env="UP_KEY")
    transport = httpx.MockTransport(handler)
    with (
        palyra.Palyra(config, transport=transport) as client,
        pytest.raises(palyra.APIResponseValidationError) as info,
    ):
        client.chat(USER)
    seen: BaseException | None = info.value
    while seen is not None:
        _assert_clean(seen, repr(seen))
        seen = seen.__cause__ or seen.__context__
