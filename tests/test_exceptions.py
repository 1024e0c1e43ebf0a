"""The error tree mirrors the OpenAI SDK and carries call context."""

from __future__ import annotations

import pytest

import palyra
from palyra._exceptions import status_error_class


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        pytest.param(400, palyra.BadRequestError, id="400"),
        pytest.param(401, palyra.AuthenticationError, id="401"),
        pytest.param(403, palyra.PermissionDeniedError, id="403"),
        pytest.param(404, palyra.NotFoundError, id="404"),
        pytest.param(409, palyra.ConflictError, id="409"),
        pytest.param(413, palyra.RequestTooLargeError, id="413"),
        pytest.param(422, palyra.UnprocessableEntityError, id="422"),
        pytest.param(429, palyra.RateLimitError, id="429"),
        pytest.param(500, palyra.InternalServerError, id="500"),
        pytest.param(503, palyra.InternalServerError, id="503"),
        pytest.param(529, palyra.OverloadedError, id="529"),
        pytest.param(418, palyra.APIStatusError, id="other"),
    ],
)
def test_status_classes(status: int, cls: type[palyra.APIStatusError]) -> None:
    """Each HTTP status maps to its OpenAI-SDK-named class."""
    assert status_error_class(status) is cls


def test_tree_shape() -> None:
    """Runtime failures sit under APIError; misuse stays outside it."""
    assert issubclass(palyra.APITimeoutError, palyra.APIConnectionError)
    assert issubclass(palyra.StreamInterruptedError, palyra.APIConnectionError)
    assert issubclass(palyra.RateLimitError, palyra.APIStatusError)
    assert issubclass(palyra.OverloadedError, palyra.InternalServerError)
    assert issubclass(palyra.APIStatusError, palyra.APIError)
    assert issubclass(palyra.ResponseTooLargeError, palyra.APIResponseValidationError)
    for cls in (
        palyra.ConfigError,
        palyra.InvalidRequestError,
        palyra.ContextWindowExceededError,
        palyra.UnsupportedCapabilityError,
        palyra.ModelNotFoundError,
        palyra.CredentialError,
    ):
        assert issubclass(cls, palyra.PalyraError)
        assert not issubclass(cls, palyra.APIError)
    assert issubclass(palyra.ConfigError, ValueError)
    assert issubclass(palyra.InvalidRequestError, ValueError)


def test_status_error_carries_context() -> None:
    """Provider, model, request id and status show in the message."""
    error = palyra.RateLimitError(
        "slow down", provider="up", model="m", request_id="req_1", code="rate"
    )
    assert error.status_code == 429
    assert str(error) == "HTTP 429: slow down (provider=up, model=m, request_id=req_1)"
    assert repr(error).startswith("RateLimitError(")
    assert (error.provider, error.model, error.code) == ("up", "m", "rate")


def test_config_error_lists_every_problem() -> None:
    """Several problems are listed one per line with their paths."""
    error = palyra.ConfigError([("a.b", "bad"), ("c[0]", "worse")])
    assert str(error) == "invalid palyra configuration\n  a.b: bad\n  c[0]: worse"
    assert error.errors == [("a.b", "bad"), ("c[0]", "worse")]


def test_response_too_large_names_its_cap() -> None:
    """The cap's setting and value travel as attributes."""
    error = palyra.ResponseTooLargeError(
        "too big", limit=10, setting="max_event_bytes", provider="up", model="m"
    )
    assert (error.limit, error.setting) == (10, "max_event_bytes")
    assert str(error) == "too big (provider=up, model=m)"
