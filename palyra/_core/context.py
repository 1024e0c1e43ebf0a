"""Who a call is for (`Caller`) and everything known about one call (`CallContext`).

A `Caller` is checked once, when a client is bound or a call is made, and
then only read: governance, auth scopes, routing and cron key off it. The
`CallContext` is the one mutable record of a call that every hook sees.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from .._decision import RoutingDecision
from .._exceptions import InvalidRequestError, PalyraError
from .._registry import ResolvedModel
from .._tokens import TokenEstimate
from .._usage import Cost, NormalizedUsage
from .._utils import shown
from .._wire import Attempt, PalyraInfo

__all__ = [
    "AGENT_ID",
    "MAX_TAGS",
    "NOBODY",
    "OPAQUE_ID",
    "CallContext",
    "Caller",
    "Operation",
]

Operation = Literal["chat", "embeddings", "transcription", "models", "count_tokens"]

MAX_TAGS = 16
# Identifiers travel into ledgers, metric labels and upstream metadata: no
# spaces or control characters, and a bounded length.
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
OPAQUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,255}")
_TAG_KEY = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
_TAG_VALUE_MAX = 256
_PROFILE_ID = re.compile(r"[a-z0-9._-]{1,128}")  # an auth profile's id
_RULES = {
    "agent": (AGENT_ID, "1-128 characters of letters, digits and . _ : @ -"),
    "session": (OPAQUE_ID, "1-256 characters of letters, digits and . _ : @ / + = -"),
    "principal": (OPAQUE_ID, "1-256 characters of letters, digits and . _ : @ / + = -"),
    "auth_profile": (_PROFILE_ID, "1-128 characters of a-z, 0-9 and . _ -"),
}
_NO_TAGS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is for: the agent acting, the conversation or session, the
    principal (user or token) on whose behalf, and free-form tags; and the
    auth profile its calls to that profile's provider use (a scheduled job's),
    over the configured choice."""

    agent: str | None = None
    session: str | None = None
    principal: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _NO_TAGS)
    auth_profile: str | None = None
    # What reply.palyra says of this caller: worked out once, read per call.
    _info: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        info: dict[str, Any] = {
            name: value
            for name in ("agent", "session", "principal")
            if (value := getattr(self, name)) is not None
        }
        if self.tags:
            info["tags"] = dict(self.tags)
        object.__setattr__(self, "_info", info)

    def merged(
        self,
        agent: str | None = None,
        session: str | None = None,
        principal: str | None = None,
        tags: Mapping[str, str] | None = None,
        auth_profile: str | None = None,
    ) -> Caller:
        """This caller with the given values checked and laid over it; tags
        merge key by key.

        Raises:
            InvalidRequestError: naming the bad field.
        """
        if (
            agent is None
            and session is None
            and principal is None
            and tags is None
            and auth_profile is None
        ):
            return self
        merged_tags = self.tags
        if tags is not None:
            merged_tags = MappingProxyType({**self.tags, **_checked_tags(tags)})
            if len(merged_tags) > MAX_TAGS:
                raise InvalidRequestError(f"tags: at most {MAX_TAGS} tags per call")
        return Caller(
            agent=self.agent if agent is None else _checked("agent", agent),
            session=self.session if session is None else _checked("session", session),
            principal=self.principal
            if principal is None
            else _checked("principal", principal),
            tags=merged_tags,
            auth_profile=self.auth_profile
            if auth_profile is None
            else _checked("auth_profile", auth_profile),
        )

    def info_fields(self) -> dict[str, Any]:
        """The fields of ``reply.palyra`` that say who the call was for (only
        those set: an unbound call pays nothing for them)."""
        return self._info

    @property
    def end_user(self) -> str | None:
        """The id sent to upstreams that take one for the end user (Anthropic's
        ``metadata.user_id``) when the call gives none: the principal, else
        the agent."""
        return self.principal or self.agent


NOBODY = Caller()


def _checked(name: str, value: Any) -> str:
    pattern, rule = _RULES[name]
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{name}: must be a string, got {type(value).__name__}"
        )
    if not pattern.fullmatch(value):
        raise InvalidRequestError(f"{name}: must be {rule}; got {shown(value)}")
    return value


def _checked_tags(tags: Any) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise InvalidRequestError(
            f"tags: must be a mapping of str to str, got {type(tags).__name__}"
        )
    if len(tags) > MAX_TAGS:
        raise InvalidRequestError(f"tags: at most {MAX_TAGS} tags per call")
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise InvalidRequestError(
                "tags: keys must be 1-64 characters of a-z, 0-9 and _ . : -"
                f" starting with a letter or digit; got {shown(key)}"
            )
        if not isinstance(value, str):
            raise InvalidRequestError(
                f"tags[{key!r}]: must be a string, got {type(value).__name__}"
            )
        if len(value) > _TAG_VALUE_MAX or not value.isprintable():
            raise InvalidRequestError(
                f"tags[{key!r}]: must be at most {_TAG_VALUE_MAX} printable"
                " characters (no control characters)"
            )
        checked[key] = value
    return checked


@dataclass(slots=True)
class CallContext:
    """Everything known about one call, handed to every hook.

    ``requested`` is the model the call is for (the caller's, or routing's
    choice); ``model`` is the candidate being tried, and after a failover the
    one that served. ``request`` is the provider-neutral request (a
    `ChatRequest`, `EmbeddingsRequest` or `TranscriptionRequest`; None for
    provider-level calls).
    """

    operation: Operation
    model: ResolvedModel
    caller: Caller = NOBODY
    request: Any = None
    started: float = field(default_factory=time.perf_counter)  # for latency
    deadline: float | None = None  # clock() time the call must end by
    seconds: float | None = None  # the deadline, as given
    clock: Callable[[], float] = time.monotonic
    estimate: TokenEstimate | None = None
    estimate_for: str | None = None  # the upstream model `estimate` counted for
    attempts: list[Attempt] = field(default_factory=list)
    result: Any = None
    error: PalyraError | None = None  # set when the call failed
    failed: bool = False  # the call-level failure hooks have run
    requested: ResolvedModel | None = None
    usage_estimated: bool = False  # the upstream reported none: counted locally
    # Filled in by governance's hooks: what the call used and cost (for
    # ``reply.palyra``), and its own per-call state (the candidate being
    # tried and its budget reservation), which the core never reads.
    usage: NormalizedUsage | None = None
    cost: Cost | None = None
    governance: Any = None
    routing: RoutingDecision | None = None  # smart routing's decision, if it ran
    # A stream's first chunk: when it came (ms from the start), and who is
    # told at that moment and when each attempt is sent (the observability
    # layer's per-call state: it sets this, the core only calls it).
    first_token_ms: float | None = None
    observe: Any = None

    def info(self) -> PalyraInfo:
        """The ``palyra`` field of the result."""
        requested = self.requested or self.model
        return PalyraInfo(
            provider=self.model.provider.id,
            model=self.model.id,
            upstream_model=self.model.upstream,
            # What the caller named, also when enforced routing chose another.
            requested_model=requested.id
            if self.routing is None
            else self.routing.requested,
            attempts=self.attempts,
            latency_ms=self.elapsed_ms(),
            token_estimate=self.estimate,
            usage_estimated=self.usage_estimated,
            usage=self.usage,
            cost=self.cost,
            routing=self.routing,
            **self.caller.info_fields(),
        )

    def saw_first_token(self) -> None:
        """A stream's first chunk arrived (its session says so, once)."""
        if self.first_token_ms is None:
            self.first_token_ms = self.elapsed_ms()
            if self.observe is not None:
                self.observe.first_token(self)

    def sending(self) -> None:
        """An attempt's request goes upstream now (its observer notes when)."""
        if self.observe is not None:
            self.observe.sending()

    def elapsed_ms(self) -> float:
        """Milliseconds since the call started."""
        return (time.perf_counter() - self.started) * 1000

    def left(self) -> float | None:
        """Seconds left before the call's deadline (None: no deadline)."""
        if self.deadline is None:
            return None
        return self.deadline - self.clock()
