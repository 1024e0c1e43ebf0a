"""`create_app`: the raw ASGI callable, its routes, authentication, CORS and
lifespan."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from .._access import APITokenError, TokenService
from .._client import Palyra
from .._observe import CONTENT_TYPE, CallMetrics
from . import _anthropic, _audio, _openai
from ._errors import Problem, problem_of
from ._http import (
    Exchange,
    Receive,
    Scope,
    Send,
    caller_of,
    lifespan,
    new_request_id,
    under_mount,
)
from ._openapi import openapi_document

__all__ = ["create_app"]

logger = logging.getLogger("palyra.asgi")

DEFAULT_MAX_BODY = 32 * 1024 * 1024
# path -> (method, scope the token needs, handler name)
_ROUTES: dict[str, tuple[str, str, str]] = {
    "/v1/chat/completions": ("POST", "chat", "chat"),
    "/v1/embeddings": ("POST", "embeddings", "embeddings"),
    "/v1/audio/transcriptions": ("POST", "audio", "transcriptions"),
    "/v1/models": ("GET", "models", "models"),
    "/v1/messages": ("POST", "chat", "messages"),
    "/v1/messages/count_tokens": ("POST", "chat", "count_tokens"),
}
_HANDLERS = {
    "chat": _openai.chat,
    "embeddings": _openai.embeddings,
    "messages": _anthropic.messages,
    "count_tokens": _anthropic.count_tokens,
}
_MODEL_PREFIX = "/v1/models/"


class App:
    """palyra's ``/v1`` surface over one client (see `create_app`)."""

    def __init__(
        self,
        client: Palyra,
        tokens: TokenService | None,
        require_auth: bool,
        max_body_bytes: int,
        cors: tuple[str, ...] | None,
        metrics: bool = False,
        console: Any = None,
    ) -> None:
        self.client = client
        self.metrics = client.observability.metrics() if metrics else None
        self.console = console  # the console's app, served at /console
        self.tokens = tokens if tokens is not None else client.tokens
        self.require_auth = require_auth
        self.max_body = max_body_bytes
        self.cors = cors
        self._documents: dict[str, bytes] = {}  # root path -> /openapi.json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await lifespan(self.client, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        # websockets are not served: the server closes them

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.console is not None:
            path = under_mount(scope)
            if path == "/console" or path.startswith("/console/"):
                root = scope.get("root_path", "")
                # The path whole (servers differ: some give it under root_path).
                inner = {
                    **scope,
                    "root_path": f"{root}/console",
                    "path": f"{root}{path}",
                }
                await self.console(inner, receive, send)
                return
        request_id = new_request_id()
        scope["palyra.request_id"] = request_id
        headers = [(b"x-request-id", request_id.encode())]
        path = under_mount(scope)
        ex = Exchange(scope, receive, send, path, headers)
        origin = ex.headers.get("origin")
        if (
            self.cors is not None
            and origin
            and ("*" in self.cors or origin in self.cors)
        ):
            headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
            headers.append((b"vary", b"origin"))
            if ex.method == "OPTIONS":
                await self._preflight(ex)
                return
        tracing = self.client.observability.tracing
        trace = None if tracing is None else tracing.enter(ex.headers)
        try:
            await self._route(ex)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # cancelled: the server is going away
            problem = problem_of(exc, request_id)
            if ex.started:
                logger.warning(
                    "palyra.asgi: %s failed after its head: %s",
                    request_id,
                    problem.message,
                )
                return
            # /v1/messages speaks Anthropic's envelope, the rest OpenAI's.
            anthropic = path.startswith("/v1/messages")
            body = _anthropic.error_body(problem) if anthropic else problem.body()
            await ex.answer_json(problem.status, body, problem.headers)
        finally:
            if tracing is not None:  # the caller's trace context: this request's
                tracing.leave(trace)

    async def _preflight(self, ex: Exchange) -> None:
        asked = ex.headers.get(
            "access-control-request-headers", "authorization, content-type"
        )
        await ex.answer(
            204,
            b"",
            [
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", asked.encode("latin-1")),
                (b"access-control-max-age", b"600"),
            ],
        )

    async def _route(self, ex: Exchange) -> None:
        path = ex.path
        if path == "/openapi.json" and ex.method == "GET":
            await ex.answer(200, self._document(ex.scope.get("root_path", "")))
            return
        if path == "/metrics" and ex.method == "GET" and self.metrics is not None:
            await self._scrape(ex, self.metrics)
            return
        if path.startswith(_MODEL_PREFIX) and len(path) > len(_MODEL_PREFIX):
            method, scope, name = "GET", "models", "model"
        elif path in _ROUTES:
            method, scope, name = _ROUTES[path]
        else:
            raise Problem(404, f"no route {path!r}", code="not_found")
        if ex.method != method:
            raise Problem(
                405,
                f"{path} takes {method}",
                code="method_not_allowed",
                headers={"allow": method},
            )
        scopes, caller = await self._authenticate(ex, scope)
        if name == "models":
            await _openai.models(ex, self.client, scopes)
            return
        if name == "model":
            await _openai.model(ex, self.client, scopes, path[len(_MODEL_PREFIX) :])
            return
        if name == "transcriptions":
            await _audio.transcriptions(ex, self.client, caller, self.max_body)
            return
        data = await ex.json(self.max_body)
        await _HANDLERS[name](ex, self.client, data, caller)

    async def _scrape(self, ex: Exchange, metrics: CallMetrics) -> None:
        """Prometheus' page, no token needed (serve it where scrapers are):
        budgets may read the ledger or Redis, so it is made off the loop."""
        import asyncio

        page = await asyncio.to_thread(self._page, metrics)
        await ex.answer(200, page, [(b"content-type", CONTENT_TYPE.encode())])

    def _page(self, metrics: CallMetrics) -> bytes:
        # The calls' events so far are counted first (a second at most).
        self.client.flush(1.0)
        return metrics.render()

    def _document(self, root: str) -> bytes:
        found = self._documents.get(root)
        if found is None:
            hints = tuple(sorted(self.client.config.routing.hints))
            document = openapi_document(root, hints)
            found = json.dumps(document, separators=(",", ":")).encode()
            if len(self._documents) < 16:  # one per mount point
                self._documents[root] = found
        return found

    async def _authenticate(
        self, ex: Exchange, scope: str
    ) -> tuple[tuple[str, ...] | None, dict[str, Any]]:
        """The token's scopes (None: no token needed) and who the call is for."""
        caller = caller_of(ex.headers)
        secret = _bearer(ex.headers)
        if secret is None:
            if self.require_auth:
                raise APITokenError(
                    "no API token: send Authorization: Bearer pk-palyra-...",
                    status=401,
                    code="missing_api_token",
                )
            return None, caller
        # A primary-key read of a local file; a rate limit on Redis is awaited.
        info = await self.tokens.averify_inline(secret, scope)
        if info.agent is not None:
            caller["agent"] = info.agent  # the token's agent wins over the header
        return info.scopes, caller


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return value.strip()  # malformed: verify refuses it with a 401
    key = headers.get("x-api-key")  # the Anthropic SDK's header
    return key.strip() if key else None


def create_app(
    client: Palyra,
    *,
    tokens: TokenService | None = None,
    require_auth: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    cors: Iterable[str] | None = None,
    metrics: bool = False,
    console: bool = False,
) -> App:
    """The ``/v1`` surface of ``client`` as a raw ASGI app.

    Args:
        client: The client every request is a call of.
        tokens: Where API tokens are verified (default ``client.tokens``).
        require_auth: False serves callers with no token (local use only);
            a token given is still verified.
        max_body_bytes: The largest request body; a larger one is refused
            with 413 while it is read, before it is held whole.
        cors: Origins allowed to call from a browser (``"*"`` for any), or
            None for no CORS headers.
        metrics: Serve Prometheus metrics at ``GET /metrics``, without a
            token (``client.observability.metrics()``).
        console: Serve the admin console at ``/console`` (`create_console`,
            which asks for an ``admin``-scoped token).

    Returns:
        An ASGI 3 callable; its lifespan's shutdown closes ``client``.
    """
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ValueError("max_body_bytes must be a positive integer")
    origins = None if cors is None else tuple(cors)
    made = None
    if console:
        from ._console import create_console

        made = create_console(client)
    return App(client, tokens, require_auth, max_body_bytes, origins, metrics, made)
