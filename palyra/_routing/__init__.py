"""Smart routing: which model serves a chat call, decided in-process in
microseconds, and why.

What it is for: `Router` scores a request's complexity from documented,
weighted signals (``signals``, ``scoring``), filters the registry's chat
models by what the request needs, health and budget headroom
(``candidates``), ranks the fitting ones of the wanted tier by this
request's real price and observed latency (``ranking``); the decision says
why in one sentence (``palyra._explained``, written from the decision itself).
`Routing` joins it to the pipeline through the ``route`` seam, once per
call, before the candidates are planned; in ``enforced`` mode its choice
serves and failover applies after it.
``shares`` keeps each model's recent prompt-cache share, for prices with
cached tokens included.

May import: ``_config``, ``_exceptions``, ``_usage``, ``_decision``,
``_registry``, ``_request``, ``_tokens``, ``_core`` and ``_governance``
(through their ``__init__``), and the standard library. Never the client.

Exports to the rest of palyra: `Router`, `Routing`, `Assessor` and
`CacheShares`.
"""

from .candidates import Assessor
from .hook import Routing
from .router import Router
from .shares import CacheShares

__all__ = ["Assessor", "CacheShares", "Router", "Routing"]
