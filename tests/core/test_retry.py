"""Retry decisions: failure taxonomy, Retry-After parsing and the retry policy."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

import palyra
from palyra._core.failures import (
    RETRYABLE_STATUSES,
    Failure,
    FailureClass,
    classify,
    retry_after_seconds,
)
from palyra._core.retry import RetryPolicy
from palyra._exceptions import status_error_class

C = FailureClass
NOW = 1_700_000_000.0
OPENAI_CONTEXT = (
    "This model's maximum context length is 8192 tokens. However, your messages"
    " resulted in 9000 tokens. Please reduce the length of the messages."
)
OPENAI_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details."
)
ANTHROPIC_CREDIT = (
    "Your credit balance is too low to access the Anthropic API. Please go to"
    " Plans & Billing to upgrade or purchase credits."
)


def _status(status: int, message: str = "upstream said no", **kw: str) -> Exception:
    return status_error_class(status)(message, status_code=status, **kw)


def _window() -> Exception:
    return palyra.ContextWindowExceededError(
        "too long", prompt_tokens=10, requested_output_tokens=0, context_window=5
    )


@pytest.mark.parametrize(
    ("error", "cls", "retryable", "failover"),
    [
        pytest.param(
            palyra.APITimeoutError("slow"), C.TIMEOUT, True, True, id="timeout"
        ),
        pytest.param(
            palyra.APIConnectionError("reset"), C.CONNECTION, True, True, id="conn"
        ),
        pytest.param(
            palyra.StreamInterruptedError("cut"), C.CONNECTION, True, True, id="cut"
        ),
        pytest.param(httpx.ReadTimeout("slow"), C.TIMEOUT, True, True, id="httpx-tmo"),
        pytest.param(
            httpx.ConnectError("refused"), C.CONNECTION, True, True, id="httpx-conn"
        ),
        pytest.param(_status(400), C.BAD_REQUEST, False, False, id="400"),
        pytest.param(
            _status(400, OPENAI_CONTEXT, code="context_length_exceeded"),
            C.CONTEXT_OVERFLOW,
            False,
            True,
            id="400-openai-context",
        ),
        pytest.param(
            _status(400, "bad", code="context_length_exceeded"),
            C.CONTEXT_OVERFLOW,
            False,
            True,
            id="400-context-code-only",
        ),
        pytest.param(
            _status(400, OPENAI_CONTEXT),
            C.CONTEXT_OVERFLOW,
            False,
            True,
            id="400-context-wording-only",
        ),
        pytest.param(
            _status(
                400,
                "prompt is too long: 215000 tokens > 200000 maximum",
                type="invalid_request_error",
            ),
            C.CONTEXT_OVERFLOW,
            False,
            True,
            id="400-anthropic-context",
        ),
        pytest.param(
            _status(400, "input length and `max_tokens` exceed context limit: 1 > 0"),
            C.CONTEXT_OVERFLOW,
            False,
            True,
            id="400-anthropic-context-limit",
        ),
        pytest.param(
            _status(
                400,
                "The response was filtered due to the prompt triggering Azure"
                " OpenAI's content management policy.",
                code="content_filter",
            ),
            C.CONTENT_FILTER,
            False,
            False,
            id="400-content-filter",
        ),
        pytest.param(
            _status(400, ANTHROPIC_CREDIT, type="invalid_request_error"),
            C.QUOTA_EXHAUSTED,
            False,
            True,
            id="400-anthropic-credit",
        ),
        pytest.param(_status(401), C.AUTH_INVALID, False, True, id="401"),
        pytest.param(_status(402), C.QUOTA_EXHAUSTED, False, True, id="402"),
        pytest.param(_status(403), C.PERMISSION, False, True, id="403"),
        pytest.param(_status(404), C.NOT_FOUND, False, True, id="404"),
        pytest.param(_status(408), C.SERVER_ERROR, True, True, id="408"),
        pytest.param(_status(409), C.SERVER_ERROR, True, True, id="409"),
        pytest.param(_status(413), C.BAD_REQUEST, False, False, id="413"),
        pytest.param(_status(422), C.BAD_REQUEST, False, False, id="422"),
        pytest.param(_status(418), C.UNKNOWN, False, True, id="418"),
        pytest.param(
            _status(429, "Rate limit reached for requests", code="rate_limit_exceeded"),
            C.RATE_LIMITED,
            True,
            True,
            id="429-rate",
        ),
        pytest.param(
            _status(429, OPENAI_QUOTA, code="insufficient_quota"),
            C.QUOTA_EXHAUSTED,
            False,
            True,
            id="429-openai-quota",
        ),
        pytest.param(
            _status(429, OPENAI_QUOTA),
            C.QUOTA_EXHAUSTED,
            False,
            True,
            id="429-quota-wording",
        ),
        pytest.param(
            _status(429, OPENAI_QUOTA, code="rate_limit_exceeded"),
            C.RATE_LIMITED,
            True,
            True,
            id="429-rate-code-beats-wording",
        ),
        pytest.param(
            _status(429, "Quota exceeded for metric 'requests per minute'"),
            C.RATE_LIMITED,
            True,
            True,
            id="429-per-minute-quota",
        ),
        pytest.param(_status(500), C.SERVER_ERROR, True, True, id="500"),
        pytest.param(_status(501), C.SERVER_ERROR, False, True, id="501"),
        pytest.param(_status(502), C.SERVER_ERROR, True, True, id="502"),
        pytest.param(_status(503), C.SERVER_ERROR, True, True, id="503"),
        pytest.param(_status(504), C.SERVER_ERROR, True, True, id="504"),
        pytest.param(_status(529), C.OVERLOADED, True, True, id="529"),
        pytest.param(
            _status(503, "Overloaded", type="overloaded_error"),
            C.OVERLOADED,
            True,
            True,
            id="503-overloaded-type",
        ),
        pytest.param(
            palyra.OverloadedError("busy"), C.OVERLOADED, True, True, id="overloaded"
        ),
        pytest.param(
            palyra.APIResponseValidationError("html"),
            C.UNKNOWN,
            False,
            True,
            id="bad-2xx-body",
        ),
        pytest.param(
            palyra.ResponseTooLargeError("big", limit=1, setting="max_event_bytes"),
            C.UNKNOWN,
            False,
            True,
            id="2xx-body-past-a-cap",
        ),
        pytest.param(_window(), C.CONTEXT_OVERFLOW, False, True, id="local-window"),
        pytest.param(
            palyra.CredentialError("no key"), C.AUTH_INVALID, False, True, id="no-key"
        ),
        pytest.param(ValueError("bug"), C.UNKNOWN, False, False, id="bug"),
    ],
)
def test_classify(
    error: Exception, cls: FailureClass, retryable: bool, failover: bool
) -> None:
    """Each error maps to its class and the retry and failover flags."""
    failure = classify(error)
    assert (failure.cls, failure.retryable, failure.failover) == (
        cls,
        retryable,
        failover,
    )
    assert failure.retry_after is None


def test_classify_keeps_status_and_retry_after() -> None:
    """The status and the upstream's Retry-After ride on the failure."""
    failure = classify(_status(429), {"retry-after": "7"})
    assert failure == Failure(C.RATE_LIMITED, True, True, 429, 7.0)
    assert classify(palyra.APITimeoutError("slow")).status is None


def test_should_retry_false_header_wins() -> None:
    """``x-should-retry: false`` turns off retries, never failover."""
    failure = classify(_status(503), httpx.Headers({"X-Should-Retry": "False"}))
    assert (failure.retryable, failure.failover) == (False, True)


def test_retryable_statuses_match_the_issue() -> None:
    """Only 408, 409, 429, 500, 502, 503, 504 and 529 are retried."""
    retried = {s for s in range(400, 600) if classify(_status(s)).retryable}
    assert retried == RETRYABLE_STATUSES == {408, 409, 429, 500, 502, 503, 504, 529}


def _http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="ms"),
        pytest.param({"retry-after-ms": "250", "retry-after": "9"}, 0.25, id="ms-wins"),
        pytest.param({"retry-after-ms": "soon", "retry-after": "9"}, 9.0, id="bad-ms"),
        pytest.param({"retry-after": "3"}, 3.0, id="seconds"),
        pytest.param({"Retry-After": " 2.5 "}, 2.5, id="float-any-case"),
        pytest.param({"retry-after": "-4"}, 0.0, id="negative"),
        pytest.param({"retry-after": _http_date(NOW + 30)}, 30.0, id="date-future"),
        pytest.param({"retry-after": _http_date(NOW - 30)}, 0.0, id="date-past"),
        pytest.param(
            {"retry-after": "Tue, 14 Nov 2023 22:13:50 -0000"}, 30.0, id="date-naive"
        ),
        pytest.param({"retry-after": "later, maybe"}, None, id="garbage"),
        pytest.param({"retry-after": "inf"}, None, id="inf"),
        pytest.param({"retry-after": "nan"}, None, id="nan"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    """retry-after-ms first, then Retry-After as seconds or an HTTP date."""
    assert retry_after_seconds(headers, now=NOW) == expected


def test_retry_after_with_httpx_headers() -> None:
    """httpx's case-insensitive headers work as they come."""
    headers = httpx.Headers({"Retry-After-Ms": "100"})
    assert retry_after_seconds(headers, now=NOW) == 0.1


def _no_jitter() -> float:
    return 0.0


def _fail(status: int = 503, retry_after: float | None = None) -> Failure:
    return Failure(C.SERVER_ERROR, True, True, status, retry_after)


def _waits(policy: RetryPolicy, *failures: Failure) -> list[float | None]:
    """The policy's answer after each failed attempt of one candidate."""
    run = policy.start()
    return [run.after(failure) for failure in failures]


def test_stops_after_max_retries() -> None:
    """max_retries retries follow the first attempt, then it stops."""
    policy = RetryPolicy(max_retries=2, jitter=_no_jitter)
    assert _waits(policy, _fail(), _fail(), _fail()) == [0.15, 0.3, None]
    assert _waits(RetryPolicy(max_retries=0), _fail()) == [None]


def test_each_run_starts_afresh() -> None:
    """A policy serves many calls: each run counts its own attempts."""
    policy = RetryPolicy(max_retries=1, jitter=_no_jitter)
    assert _waits(policy, _fail(), _fail()) == [0.15, None]
    assert _waits(policy, _fail(), _fail()) == [0.15, None]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_never_retries_request_errors(status: int) -> None:
    """Other 4xx are never retried, even with a Retry-After."""
    failure = classify(_status(status), {"retry-after": "1"})
    assert _waits(RetryPolicy(max_retries=10), failure) == [None]


def test_a_refused_address_is_never_retried() -> None:
    """The network guard's refusal is final for the provider."""
    error = palyra.BlockedAddressError(
        "refused", host="h", reason="resolves to a private address"
    )
    failure = classify(error)
    assert (failure.cls, failure.retryable, failure.failover) == (
        C.BLOCKED,
        False,
        True,
    )
    assert not failure.provider_fault
    assert not failure.reported
    assert _waits(RetryPolicy(max_retries=10), failure) == [None]


def test_honours_retry_after_up_to_the_cap() -> None:
    """The upstream's wait wins over backoff, without jitter, up to the cap;
    a longer one stops retrying (failover or the caller decides)."""
    policy = RetryPolicy(retry_after_cap=60.0, jitter=lambda: 0.5)
    assert _waits(policy, _fail(retry_after=3.0)) == [3.0]
    assert _waits(policy, _fail(retry_after=0.0)) == [0.0]
    assert _waits(policy, _fail(retry_after=60.0)) == [60.0]
    assert _waits(policy, _fail(retry_after=600.0)) == [None]
    assert _waits(RetryPolicy(retry_after_cap=0.0), _fail(retry_after=1)) == [None]


def test_retry_after_and_backoff_mix_within_one_run() -> None:
    """Backoff counts every attempt, whether or not the upstream named a wait."""
    policy = RetryPolicy(max_retries=3, backoff=1.0, jitter=_no_jitter)
    waits = _waits(policy, _fail(retry_after=5.0), _fail(), _fail(), _fail())
    assert waits == [5.0, 2.0, 4.0, None]


def test_provider_fault() -> None:
    """Request-caused failures (context overflow included) spare the breaker."""
    assert classify(_status(503)).provider_fault
    assert classify(_status(401)).provider_fault
    assert not classify(_status(400)).provider_fault
    overflow = classify(_status(400, "maximum context length is 8192 tokens"))
    assert overflow.failover
    assert not overflow.provider_fault


def test_backoff_grows_and_is_capped() -> None:
    """Backoff doubles from its base up to backoff_max."""
    policy = RetryPolicy(
        max_retries=10, backoff=1.0, backoff_max=4.0, jitter=_no_jitter
    )
    assert _waits(policy, *[_fail()] * 5) == [1.0, 2.0, 4.0, 4.0, 4.0]
    huge = RetryPolicy(
        max_retries=10**6, backoff=1.0, backoff_max=4.0, jitter=_no_jitter
    )
    assert _waits(huge, *[_fail()] * 200)[-1] == 4.0


def test_jitter_is_injected() -> None:
    """A constant jitter gives exact sleeps, shortened by a quarter of it."""
    policy = RetryPolicy(
        max_retries=5, backoff=1.0, backoff_max=4.0, jitter=lambda: 0.5
    )
    assert _waits(policy, *[_fail()] * 4) == [0.875, 1.75, 3.5, 3.5]


def test_from_provider() -> None:
    """The provider's retry settings become the policy."""
    config = palyra.ProviderConfig(
        id="p", max_retries=4, retry_backoff=0.5, retry_backoff_max=3.0
    )
    policy = RetryPolicy.from_provider(config, retry_after_cap=30.0)
    assert (policy.max_retries, policy.backoff, policy.backoff_max) == (4, 0.5, 3.0)
    assert policy.retry_after_cap == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_retries": -1}, id="retries"),
        pytest.param({"backoff": -1.0}, id="backoff"),
        pytest.param({"retry_after_cap": -1.0}, id="cap"),
    ],
)
def test_policy_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    """Impossible settings fail when the policy is built."""
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_import_palyra_does_not_load_tenacity() -> None:
    """tenacity stays unloaded until the pipeline needs a retry decision."""
    code = "import sys, palyra; print('tenacity' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
