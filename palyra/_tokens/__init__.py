"""Prompt token estimation made before a request is dispatched: tiktoken's
one home.

What it is for: `TokenEstimate` (what an estimate says), the `TokenCounter`
protocol (what a counter must do) and `TiktokenCounter`, the default counter.
Inside, ``estimate`` holds the first two, ``encodings`` picks a model's
encoding and loads it offline (never at import, never from the network),
``budget`` bounds what one call tokenizes (sampling past the budget),
``images`` prices image parts by OpenAI's tile rule, ``rules`` holds the
cookbook's chat-format constants, and ``counter`` walks a request with them.

May import: ``_version``, ``_exceptions``, ``_utils``, pydantic, tiktoken (on
first use only) and the standard library. Never a layer above: `_wire`
and everything up from it import this package.

Exports to the rest of palyra: `TiktokenCounter`, `TokenCounter` and
`TokenEstimate`.
"""

from .counter import TiktokenCounter
from .estimate import TokenCounter, TokenEstimate

__all__ = ["TiktokenCounter", "TokenCounter", "TokenEstimate"]
