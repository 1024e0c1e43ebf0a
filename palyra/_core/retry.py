"""When to try the same candidate again, and after how long: tenacity decides.

The pipeline makes the attempts and does the sleeping; tenacity only decides.
A `RetryRun` drives tenacity's own iteration state machine (`Retrying.iter`,
on which tenacity's sync and async drivers are built) one failed attempt at a
time. The ``DoSleep`` it returns becomes the pipeline's `Sleep` step; a stop
means failover or the call's error. tenacity never calls, sleeps or raises
for palyra, so the one retry layer works the same sync and async.

This is the only module that imports tenacity. The pipeline loads it on the
first failed attempt, so ``import palyra`` and calls that succeed never pay.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from .failures import Failure

if TYPE_CHECKING:
    from .._config import ProviderConfig

__all__ = ["DEFAULT_RETRY_AFTER_CAP", "JITTER_SPREAD", "RetryPolicy", "RetryRun"]

DEFAULT_RETRY_AFTER_CAP = 60.0
JITTER_SPREAD = 0.25
"""A backoff sleep is shortened by up to this fraction, so it never passes the cap
and callers that failed together do not retry together."""


class _Attempted(Exception):
    """The outcome tenacity is shown for a failed attempt: the classified failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.cls.value)
        self.failure = failure


def _failure(state: RetryCallState) -> Failure:
    assert state.outcome is not None
    error = state.outcome.exception()
    assert isinstance(error, _Attempted)
    return error.failure


class _Wait(wait_base):
    """The upstream's Retry-After when it gave one, else jittered backoff.

    Jitter is ours: tenacity's jittered waits call the random module, which a
    test cannot pin down.
    """

    def __init__(self, backoff: wait_exponential, jitter: Callable[[], float]):
        self._backoff = backoff
        self._jitter = jitter

    def __call__(self, retry_state: RetryCallState) -> float:
        asked = _failure(retry_state).retry_after
        if asked is not None:
            return asked
        factor = min(max(self._jitter(), 0.0), 1.0)
        return float(self._backoff(retry_state)) * (1 - JITTER_SPREAD * factor)


class _AskedTooLong(stop_base):
    """Stop when the upstream asks to stay away longer than we may wait: another
    candidate (or the caller) is better served than a sleep that ends early."""

    def __init__(self, cap: float) -> None:
        self._cap = cap

    def __call__(self, retry_state: RetryCallState) -> bool:
        asked = _failure(retry_state).retry_after
        return asked is not None and asked > self._cap


def _retryable(error: BaseException) -> bool:
    return isinstance(error, _Attempted) and error.failure.retryable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try the same candidate again, and after how long.

    Args:
        max_retries: Retries after the first attempt.
        backoff: First backoff sleep, in seconds; it doubles on each retry.
        backoff_max: Longest backoff sleep, in seconds.
        retry_after_cap: Longest wait honoured from ``Retry-After``, in seconds.
        jitter: Returns a factor in [0, 1); a backoff sleep is shortened by
            ``JITTER_SPREAD`` times it. Inject a constant for exact tests.

    The call's deadline is not the policy's business: the pipeline refuses any
    sleep that would reach it.
    """

    max_retries: int = 2
    backoff: float = 0.15
    backoff_max: float = 8.0
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP
    jitter: Callable[[], float] = random.random
    _engine: Retrying = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if min(self.backoff, self.backoff_max, self.retry_after_cap) < 0:
            raise ValueError("backoff, backoff_max and retry_after_cap must be >= 0")
        engine = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.max_retries + 1)
            | _AskedTooLong(self.retry_after_cap),
            wait=_Wait(
                wait_exponential(multiplier=self.backoff, max=self.backoff_max),
                self.jitter,
            ),
            # A stop answers None instead of raising tenacity's RetryError.
            retry_error_callback=lambda state: None,
        )
        object.__setattr__(self, "_engine", engine)

    @classmethod
    def from_provider(
        cls,
        config: ProviderConfig,
        *,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
    ) -> RetryPolicy:
        """The policy for one provider's configured retries and backoff."""
        return cls(
            max_retries=config.max_retries,
            backoff=config.retry_backoff,
            backoff_max=config.retry_backoff_max,
            retry_after_cap=retry_after_cap,
        )

    def start(self) -> RetryRun:
        """The retry state of one candidate's attempts, after its first one."""
        return RetryRun(self._engine.copy())


class RetryRun:
    """tenacity's iteration over one candidate's attempts, one failure at a time.

    Not thread-safe: one run belongs to one call.
    """

    __slots__ = ("_engine", "_state")

    def __init__(self, engine: Retrying) -> None:
        self._engine = engine
        engine.begin()  # tenacity's per-run statistics, which iter() updates
        self._state = RetryCallState(engine, None, (), {})
        first = engine.iter(self._state)
        assert isinstance(first, DoAttempt)

    def after(self, failure: Failure) -> float | None:
        """Seconds to sleep before the next attempt, or None to stop retrying.

        Stops when the failure is not retryable, when ``max_retries`` retries
        were made, or when a ``Retry-After`` exceeds the cap. The wait is the
        upstream's ``Retry-After`` when given, else exponential backoff with
        jitter, at most ``backoff_max``.
        """
        state = self._state
        state.set_exception((_Attempted, _Attempted(failure), None))
        try:
            action = self._engine.iter(state)
        except _Attempted:
            return None  # not retryable: tenacity hands the outcome back
        if not isinstance(action, DoSleep):
            return None
        state.prepare_for_next_attempt()
        following = self._engine.iter(state)
        assert isinstance(following, DoAttempt)
        return float(action)
