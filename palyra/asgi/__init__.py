"""``palyra.asgi``: palyra's ``/v1`` surface as a raw ASGI app.

What it is for: `create_app` serves a `palyra.Palyra` client in the shape of
the OpenAI API (``/v1/chat/completions`` with SSE, ``/v1/embeddings``,
``/v1/audio/transcriptions``, ``/v1/models``) and of the Anthropic API
(``/v1/messages``, ``/v1/messages/count_tokens``), described at
``/openapi.json``, so the official SDKs and ``curl`` work by changing the base
URL; routing, failover, budgets, auth profiles and the ledger apply to every
call unchanged, because every request is one call of the async client. No
framework is needed: mount it under any prefix (Starlette or FastAPI
``Mount``, or ``root_path``). Callers present API tokens (``client.tokens``).
`create_console` is the admin console's app (a browser session or a bearer,
both from an ``admin``-scoped token; its JSON admin API under ``/v1/``),
mounted at ``/console`` by ``create_app(client, console=True)``.
``import palyra`` never imports this package.

May import: everything of palyra below it (the client, the errors, the API
tokens, the wire models) and the standard library. No web framework.

Exports: `create_app`, `create_console`.
"""

from ._app import create_app
from ._console import create_console

__all__ = ["create_app", "create_console"]
