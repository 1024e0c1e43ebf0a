"""The attributes of a call's span and of its attempts' spans (pure).

Names follow OpenTelemetry's GenAI semantic conventions (``gen_ai.*``,
``error.type``); what the conventions have no name for is under
``palyra.*``: the call's id and outcome, its cost, cached and reasoning
tokens, routing, budgets, failover and who the call was for. Never a
credential, and never a prompt or an answer: spans carry no content (the
events do, with ``capture_content=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .._config import ProviderConfig
from .._exceptions import BudgetExceededError
from .events import OUTCOMES, CallEvent

__all__ = [
    "Attributes",
    "attempt_attributes",
    "call_attributes",
    "provider_host",
    "provider_name",
]

Attributes = dict[str, Any]
# gen_ai.provider.name's well-known values, by the upstream's host; an
# OpenAI-compatible server elsewhere (vLLM, a gateway) speaks as "openai".
_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
}
_KINDS = {
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "deterministic": "palyra",
}
_REQUEST = (  # request fields worth a span attribute: never content
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
)


def provider_host(provider: ProviderConfig) -> str | None:
    """The host a provider's requests go to (None: in-process)."""
    if provider.kind == "deterministic":
        return None
    return (urlsplit(provider.effective_base_url).hostname or "").lower() or None


def provider_name(provider: ProviderConfig) -> str:
    """``gen_ai.provider.name`` of a configured provider."""
    host = provider_host(provider)
    if host is not None:
        if host.endswith(".openai.azure.com"):
            return "azure.ai.openai"
        if host in _HOSTS:
            return _HOSTS[host]
    return _KINDS.get(provider.kind, provider.kind)


def call_attributes(
    event: CallEvent, ctx: Any, provider_of: Callable[[str], str]
) -> Attributes:
    """The call span's attributes at its end (``event`` is the last one)."""
    served = ctx.model
    attrs: Attributes = {
        "gen_ai.operation.name": event.operation,
        "gen_ai.provider.name": provider_of(served.provider.id),
        "gen_ai.request.model": event.requested_model or served.id,
        "palyra.call_id": event.call_id,
        "palyra.outcome": OUTCOMES.get(event.kind, event.kind),
        "palyra.provider": served.provider.id,
        "palyra.model": served.id,
        "palyra.attempts": event.attempts,
    }
    if event.stream:
        attrs["palyra.stream"] = True
    if ctx.result is not None or _answered(ctx):  # not when nothing answered
        model = getattr(ctx.result, "model", None) or served.upstream
        attrs["gen_ai.response.model"] = model
    response_id = getattr(ctx.result, "id", None)
    if isinstance(response_id, str) and response_id:
        attrs["gen_ai.response.id"] = response_id
    for field, name in _REQUEST:
        value = getattr(ctx.request, field, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[name] = value
    reasons = _finish_reasons(ctx.result)
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = reasons
    if event.kind == "error":
        attrs["error.type"] = event.error_class or "Exception"
    if event.ttft_ms is not None:
        attrs["palyra.ttft_ms"] = round(event.ttft_ms, 3)
    _usage(attrs, event)
    _cost(attrs, event)
    _failover(attrs, ctx)
    _caller(attrs, event)
    _routing(attrs, event.routing)
    _budget(attrs, ctx.error)
    return attrs


def attempt_attributes(
    number: int,
    attempt: Any,
    upstream_of: Callable[[str, str], str],
    host_of: Callable[[str], str | None],
) -> Attributes:
    """An attempt span's attributes, from its `Attempt` record (None: a
    request sent whose answer never came, the call having ended first).

    No ``gen_ai.*`` here: GenAI-aware backends count each span so named as
    one generation, and the call (its span) is one however many attempts
    it took.
    """
    if attempt is None:
        return {"palyra.attempt": number, "palyra.attempt.outcome": "unanswered"}
    attrs: Attributes = {
        "palyra.attempt": number,
        "palyra.attempt.outcome": attempt.outcome,
        "palyra.provider": attempt.provider,
        "palyra.model": attempt.model,
        "palyra.upstream_model": upstream_of(attempt.provider, attempt.model),
    }
    host = host_of(attempt.provider)
    if host:
        attrs["server.address"] = host
    if attempt.status_code is not None:
        attrs["http.response.status_code"] = attempt.status_code
    if attempt.error:
        attrs["error.type"] = attempt.error
    if attempt.failure:
        attrs["palyra.attempt.failure"] = attempt.failure
    if attempt.request_id:
        attrs["palyra.upstream.request_id"] = attempt.request_id
    return attrs


def _answered(ctx: Any) -> bool:
    """Whether the last attempt's answer began (a 2xx head)."""
    status = ctx.attempts[-1].status_code if ctx.attempts else None
    return status is not None and 200 <= status < 300


def _finish_reasons(result: Any) -> tuple[str, ...]:
    choices = getattr(result, "choices", None) or ()
    return tuple(str(c.finish_reason) for c in choices if c.finish_reason)


def _usage(attrs: Attributes, event: CallEvent) -> None:
    usage = event.usage
    if usage is None:
        return
    attrs["gen_ai.usage.input_tokens"] = usage.input_total
    attrs["gen_ai.usage.output_tokens"] = usage.output
    # The parts only when there are some: each attribute costs the SDK's
    # checks, and most calls read and write no cache.
    if usage.cache_read:
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read
        attrs["palyra.usage.cached_tokens"] = usage.cache_read
    if usage.cache_write:
        attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write
        attrs["palyra.usage.cache_write_tokens"] = usage.cache_write
    if usage.reasoning:
        attrs["palyra.usage.reasoning_tokens"] = usage.reasoning
    if usage.estimated:
        attrs["palyra.usage.estimated"] = True


def _cost(attrs: Attributes, event: CallEvent) -> None:
    cost = event.cost
    if cost is None:
        return
    if cost.total is not None:
        attrs["palyra.cost.total"] = float(cost.total)
        attrs["palyra.cost.currency"] = cost.currency
    if cost.unpriced:
        attrs["palyra.cost.unpriced"] = True
    if cost.estimated:
        attrs["palyra.cost.estimated"] = True


def _failover(attrs: Attributes, ctx: Any) -> None:
    tried: list[
        tuple[str, str]
    ] = []  # the candidates, in the order tried (a retry is one)
    for attempt in ctx.attempts:
        key = (attempt.provider, attempt.model)
        if not tried or tried[-1] != key:
            tried.append(key)
    if len(tried) > 1:
        attrs["palyra.failover"] = True
        attrs["palyra.failover.from"] = f"{tried[0][0]}/{tried[0][1]}"
        attrs["palyra.failover.candidates"] = len(tried)


def _caller(attrs: Attributes, event: CallEvent) -> None:
    for name in ("agent", "session", "principal"):
        value = getattr(event, name)
        if value:
            attrs[f"palyra.{name}"] = value
    for key, value in event.tags.items():
        attrs[f"palyra.tag.{key}"] = value


def _routing(attrs: Attributes, routing: Mapping[str, Any] | None) -> None:
    if not routing:
        return
    for key in ("mode", "score", "tier", "requested", "chosen", "chosen_tier"):
        value = routing.get(key)
        if isinstance(value, str | int | float | bool) and value is not None:
            attrs[f"palyra.routing.{key}"] = value


def _budget(attrs: Attributes, error: Any) -> None:
    if not isinstance(error, BudgetExceededError):
        return
    attrs["palyra.budget.blocked"] = True
    attrs["palyra.budget.policy"] = error.policy
    attrs["palyra.budget.metric"] = error.metric
    attrs["palyra.budget.scope"] = error.scope
    attrs["palyra.budget.scope_value"] = error.scope_value
    attrs["palyra.budget.reason"] = error.reason
    if error.limit is not None:
        attrs["palyra.budget.limit"] = float(error.limit)
    attrs["palyra.budget.spent"] = float(error.spent)
