"""The ``[state]`` table: where state shared by several processes lives
(budget reservations and spend, breakers, rate limits, locks; issue 16)."""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator, model_validator

from .base import ENV_NAME, ConfigModel

__all__ = ["REDIS_SCHEMES", "StateConfig", "redis_target"]

REDIS_SCHEMES = ("redis", "rediss", "unix")
_Seconds = Annotated[float, Field(gt=0, le=600)]


def redis_target(url: str) -> str:
    """Where a Redis URL points, ``host:port`` (or the socket path), for
    messages: never its user name or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or "?"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or '?'}:{port}"


class StateConfig(ConfigModel):
    """Shared state: ``memory`` (this process only, the default) or Redis.

    Args:
        backend: ``"memory"`` or ``"redis"``.
        url: The Redis URL (``redis://host:6379/0``, ``rediss://`` for TLS,
            ``unix:///path``); required for ``redis``. It must not hold a
            password: name an environment variable in ``password_env``.
        password_env: The environment variable holding Redis' password (read
            when palyra first connects, never at construction).
        key_prefix: Prefix of every key palyra writes (several apps can share
            one Redis). A single Redis (or a primary with replicas) is
            supported; Redis Cluster is not.
        connect_timeout: Seconds to connect to Redis.
        timeout: Seconds each Redis command may take.
        on_unavailable: What a call does when Redis cannot be reached:
            ``fail_closed`` raises `StateUnavailableError` and sends nothing;
            ``local_bound`` admits calls against in-process reservations
            capped at ``local_fraction`` of each hard limit. Default:
            ``fail_closed`` when a budget has a USD hard limit, else
            ``local_bound``.
        local_fraction: The share of each hard limit one process may spend
            on its own while Redis is down (``local_bound``).
        reservation_margin: Seconds a reservation outlives its call's
            deadline before Redis lets it go (a process that died holding it).
        retry_interval: Seconds between attempts to reach a Redis found
            down; calls in between do not wait for it.
    """

    backend: Literal["memory", "redis"] = "memory"
    url: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    password_env: str | None = None
    key_prefix: Annotated[str, Field(min_length=1, max_length=128)] = "palyra:"
    connect_timeout: _Seconds = 1.0
    timeout: _Seconds = 0.5
    on_unavailable: Literal["fail_closed", "local_bound"] | None = None
    local_fraction: Annotated[float, Field(gt=0, le=1)] = 0.1
    reservation_margin: _Seconds = 30.0
    retry_interval: _Seconds = 1.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                "a Redis URL starts with redis://, rediss:// or unix://"
                f" (got {parts.scheme or 'no scheme'!r})"
            )
        secret_params = {"password", "sslpassword", "ssl_password"}
        in_query = {k.lower() for k, _ in parse_qsl(parts.query)} & secret_params
        if parts.password is not None or in_query:
            # Said without repeating the URL: it holds the password.
            raise ValueError(
                "holds a password; put it in an environment variable and"
                " name that in state.password_env"
            )
        return url

    @field_validator("password_env")
    @classmethod
    def _check_env(cls, name: str | None) -> str | None:
        if name is not None and not ENV_NAME.match(name):
            raise ValueError("must be an environment variable name, not a password")
        return name

    @model_validator(mode="after")
    def _check_backend(self) -> Self:
        if self.backend == "redis" and self.url is None:
            raise ValueError("backend 'redis' needs a url")
        return self
