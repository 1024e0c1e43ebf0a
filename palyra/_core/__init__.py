"""The request core: one sans-I/O pipeline, driven by thin sync and async drivers.

What it is for: everything one call goes through, written once. The call's
context and caller (``context``), the steps a flow yields (``steps``), the
pipeline's operations (``pipeline``), the failover loop (``dispatch``) and the
attempt loop with the one retry layer (``attempts``; ``retry`` is the only
tenacity user, ``failures`` the taxonomy), circuit breakers and health
(``health``; shared through a bus by ``sharing``), failover order
(``failover``), stream sessions and results (``session``, ``streams``), the
seams where subsystems join (``hooks``), and the only I/O: the drivers,
and the network guard with the transports behind it (``drivers``,
``netguard``, ``connect``).

May import: the leaves (``_exceptions``, ``_addresses``, ``_utils``, ``_wire``,
``_config``, ``_tokens``, ``_request``, ``_registry``), the adapter contract exported by
``palyra._providers``, httpx, httpcore and tenacity. Never a subsystem
(``_auth``, ``_governance``, ``_routing``, ``_cron``, ``_state``): they join a
call through `Hooks`, which ``palyra._client`` wires.

Exports to the rest of palyra: what is listed in ``__all__`` below.
"""

from .context import AGENT_ID, MAX_TAGS, NOBODY, OPAQUE_ID, CallContext, Caller
from .drivers import AsyncDriver, Deferred, SyncDriver
from .failures import classify
from .health import BreakerBus, HealthTracker, ModelHealth
from .hooks import Candidate, Completion, Failed, Hooks
from .netguard import NetworkGuard, Resolver
from .pipeline import Pipeline
from .sharing import SharedBreaker
from .steps import Flow, Work
from .streams import AsyncStream, Stream

__all__ = [
    "AGENT_ID",
    "MAX_TAGS",
    "NOBODY",
    "OPAQUE_ID",
    "AsyncDriver",
    "AsyncStream",
    "BreakerBus",
    "CallContext",
    "Caller",
    "Candidate",
    "Completion",
    "Deferred",
    "Failed",
    "Flow",
    "HealthTracker",
    "Hooks",
    "ModelHealth",
    "NetworkGuard",
    "Pipeline",
    "Resolver",
    "SharedBreaker",
    "Stream",
    "SyncDriver",
    "Work",
    "classify",
]
