"""The connection to Redis: a sync client for threads, an asyncio client per
event loop, the scripts registered on each, and what "down" means.

redis-py is imported on first use (the ``redis`` extra): building a client
with ``[state] backend = "redis"`` does no I/O and imports nothing. Every
failure to reach Redis becomes `StateDown`, which names ``host:port`` and
never the password; after one, calls fail fast for ``retry_interval``
seconds instead of each waiting out a connect timeout, then the next call
tries again (reconnection is automatic).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from .._config import redis_target
from .._exceptions import ConfigError

__all__ = ["Call", "RedisLink", "ScriptError", "StateDown"]

Call = tuple[str, Sequence[str], Sequence[Any]]
"""A script to run: its text (one of `palyra._state.scripts`), keys, args."""


class StateDown(Exception):
    """Redis could not be reached (internal: each caller words its error)."""


class ScriptError(StateDown):
    """Redis is up and answered a script with an error (a bug, a key of the
    wrong type): the link is not marked down, and the settler drops what
    failed so rather than retry it for ever."""


# Errors Redis answers while it cannot serve for now (redis-py's classes for
# them): treated as down, and what failed so is tried again.
_TRANSIENT = (
    "NoScriptError",
    "OutOfMemoryError",
    "ReadOnlyError",
    "TryAgainError",
    "MasterDownError",
    "ClusterDownError",
    "MovedError",
    "NoPermissionError",
)


class RedisLink:
    """One Redis, reached from threads and event loops.

    Args:
        url: The Redis URL (no password in it).
        password: The password, if any (kept out of every repr).
        password_env: Or the environment variable holding it.
        connect_timeout: Seconds to connect.
        timeout: Seconds each command may take.
        retry_interval: Seconds calls fail fast after a failure.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        password_env: str | None = None,
        connect_timeout: float = 1.0,
        timeout: float = 0.5,
        retry_interval: float = 1.0,
    ) -> None:
        self.url = url
        self.target = redis_target(url)
        self._password = password
        self._password_env = password_env
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._lock = threading.Lock()
        self._sync: Any = None
        self._scripts: dict[str, Any] = {}
        self._async: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._down_until = 0.0
        self.last_error: str | None = None
        self.failures = 0

    def __repr__(self) -> str:
        return f"RedisLink({self.target})"

    @property
    def round_trip_bound(self) -> float:
        """Seconds one round trip can take at most: a connect and a command."""
        return self._connect_timeout + self._timeout

    def wait_bound(self, event: threading.Event) -> bool:
        """Wait for ``event`` at most as long as one connect and command can
        take (another thread's round trip to this Redis); whether it is set."""
        return event.wait(self.round_trip_bound)

    @property
    def down(self) -> bool:
        """Whether Redis failed less than ``retry_interval`` seconds ago."""
        return time.monotonic() < self._down_until

    # -- sync --------------------------------------------------------------

    def run(
        self,
        script: str,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        urgent: bool = False,
    ) -> Any:
        """Run ``script`` (one of `palyra._state.scripts`) and return its answer.

        ``urgent`` tries even within ``retry_interval`` of a failure (the
        settler's once-a-second checks: a Redis back from a restart must
        hear from every live process within its quiet period).

        Raises:
            StateDown: Redis could not be reached. ScriptError: it failed
                the script.
        """
        if not urgent:
            self._check_up()
        redis = _redis()
        try:
            registered = self._sync_script(script)
            answer = registered(keys=list(keys), args=list(args))
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        self._up()
        return answer

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several scripts in one round trip: a pipeline, not a
        transaction (each script is atomic on its own, and Redis runs them
        in order). Answers in order; a script Redis refused (a Lua error)
        is a `StateDown` in its place.

        Raises:
            StateDown: Redis could not be reached.
        """
        combined = _combined(calls)
        if combined is not None:
            return self._one_for_all(calls, self.run(*combined))
        self._check_up()
        redis = _redis()
        try:
            shas = [self._sync_script(script).sha for script, _, _ in calls]
            with self._sync.pipeline(transaction=False) as pipe:
                answers = _pipelined(pipe, calls, shas).execute(raise_on_error=False)
            for i in _unknown_scripts(answers, redis):  # new, or Redis restarted
                script, keys, args = calls[i]
                try:
                    answers[i] = self._sync_script(script)(
                        keys=list(keys), args=list(args)
                    )
                except redis.ResponseError as exc:  # this script failed alone
                    answers[i] = exc
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        self._up()
        return [self._answered(a) for a in answers]

    def _sync_script(self, script: str) -> Any:
        found = self._scripts.get(script)
        if found is None:
            with self._lock:
                if self._sync is None:
                    self._sync = _redis().Redis.from_url(self.url, **self._options())
                found = self._scripts[script] = self._sync.register_script(script)
        return found

    # -- async -------------------------------------------------------------

    async def arun(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """`run`, on this event loop's asyncio client."""
        self._check_up()
        redis = _redis()
        try:
            registered = self._async_script(script)
            answer = await registered(keys=list(keys), args=list(args))
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        self._up()
        return answer

    async def arun_many(self, calls: Sequence[Call]) -> list[Any]:
        """`run_many`, on this event loop's asyncio client."""
        combined = _combined(calls)
        if combined is not None:
            return self._one_for_all(calls, await self.arun(*combined))
        self._check_up()
        redis = _redis()
        try:
            import asyncio

            registered = [self._async_script(script) for script, _, _ in calls]
            client = self._async[asyncio.get_running_loop()][0]
            async with client.pipeline(transaction=False) as pipe:
                shas = [r.sha for r in registered]
                answers = await _pipelined(pipe, calls, shas).execute(
                    raise_on_error=False
                )
            for i in _unknown_scripts(answers, redis):
                _, keys, args = calls[i]
                try:
                    answers[i] = await registered[i](keys=list(keys), args=list(args))
                except redis.ResponseError as exc:
                    answers[i] = exc
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        self._up()
        return [self._answered(a) for a in answers]

    def _async_script(self, script: str) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is None:
            from redis import asyncio as aioredis

            # Connections belong to the loop that opened them: one client
            # per loop, dropped with its loop.
            client = aioredis.Redis.from_url(self.url, **self._options())
            entry = self._async[loop] = (client, {})
        client, scripts = entry
        found = scripts.get(script)
        if found is None:
            found = scripts[script] = client.register_script(script)
        return found

    # -- both --------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        return {
            "password": self._secret(),
            "socket_connect_timeout": self._connect_timeout,
            "socket_timeout": self._timeout,
            "retry_on_timeout": False,
            "health_check_interval": 30,
        }

    def _secret(self) -> str | None:
        if self._password is not None or self._password_env is None:
            return self._password
        value = os.environ.get(self._password_env)
        if not value:
            raise ConfigError(
                [
                    (
                        "state.password_env",
                        f"environment variable {self._password_env} is not set",
                    )
                ]
            )
        return value

    def _check_up(self) -> None:
        if self.down:
            raise StateDown(
                f"Redis at {self.target} is unavailable ({self.last_error});"
                f" trying again within {self._retry_interval:g} s"
            )

    def _failed(self, exc: Exception) -> StateDown:
        # redis-py's messages name host and port, never the password; the
        # class name is enough either way.
        if _is_script_error(exc):
            return self._refused(exc)
        self.last_error = f"{type(exc).__name__}: {_short(exc)}"
        self.failures += 1
        self._down_until = time.monotonic() + self._retry_interval
        return StateDown(f"Redis at {self.target} is unavailable ({self.last_error})")

    def _one_for_all(self, calls: Sequence[Call], answers: Any) -> list[Any]:
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise StateDown(f"Redis at {self.target} answered a batch wrongly")
        return [self._answered(a) for a in answers]

    def _answered(self, answer: Any) -> Any:
        """One answer of a batch: an error in its place becomes ours."""
        if not isinstance(answer, Exception):
            return answer
        if _is_script_error(answer):
            return self._refused(answer)
        return self._failed(answer)  # Redis cannot serve it for now

    def _refused(self, exc: Exception) -> StateDown:
        # Redis is up; the script failed.
        return ScriptError(f"Redis at {self.target} failed a script ({_short(exc)})")

    def _up(self) -> None:
        if self._down_until:
            self._down_until = 0.0

    async def aclose(self) -> None:
        """Close the running loop's asyncio client (``client.aclose()``).
        Another loop's connections cannot be closed from this one: an app
        that runs several loops closes the client on each, or lets them go
        with their loop."""
        import asyncio

        entry = self._async.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()

    def close(self) -> None:
        """Close the sync client's connections (see `aclose` for async ones)."""
        with self._lock:
            client, self._sync = self._sync, None
            self._scripts.clear()
        if client is not None:
            client.close()


def _combined(calls: Sequence[Call]) -> Call | None:
    """One script run for several calls of one script
    (`palyra._state.scripts.many`), or None: a pipeline instead."""
    from .scripts import many, many_args

    if len(calls) < 2 or len({script for script, _, _ in calls}) != 1:
        return None
    packed = many_args([(k, a) for _, k, a in calls])
    if packed is None:
        return None
    return many(calls[0][0]), *packed


def _pipelined(pipe: Any, calls: Sequence[Call], shas: list[str]) -> Any:
    for (_, keys, args), sha in zip(calls, shas, strict=True):
        pipe.evalsha(sha, len(keys), *keys, *args)
    return pipe


def _unknown_scripts(answers: list[Any], redis: Any) -> list[int]:
    """Where Redis did not know a script (it restarted since it was loaded)."""
    missing = redis.exceptions.NoScriptError
    return [i for i, a in enumerate(answers) if isinstance(a, missing)]


def _is_script_error(exc: Exception) -> bool:
    """Whether Redis, up and serving, failed a script ("BUSY": another
    script runs too long, which passes)."""
    if not isinstance(exc, _redis().ResponseError):
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    return not names.intersection(_TRANSIENT) and not str(exc).startswith("BUSY")


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError(
            [
                (
                    "state.backend",
                    "Redis support is not installed: pip install 'palyra[redis]'",
                )
            ]
        ) from None
    return redis
