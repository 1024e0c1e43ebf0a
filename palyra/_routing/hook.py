"""Smart routing joined to the pipeline: the ``route`` seam of one client.

Once per chat call, before its candidates are planned, the call's mode (its
``route=``, else ``[routing] mode``) says whether routing runs. In every mode
but ``off`` the decision lands on the call's context, so ``reply.palyra``
and the ledger record carry it; in ``enforced`` mode routing's choice
becomes the model the call is for, and failover plans from it. Served calls
teach `CacheShares` what share of each model's prompts its cache served.
"""

from __future__ import annotations

from .._config import RoutingMode
from .._core import CallContext, Completion, Hooks
from .._registry import ResolvedModel
from .._request import ChatRequest
from .router import Router
from .shares import CacheShares

__all__ = ["Routing"]


class Routing:
    """The routing hooks of one client.

    Args:
        router: Decides.
        shares: Each model's recent prompt-cache share (fed by served calls).
    """

    def __init__(self, router: Router, shares: CacheShares) -> None:
        self.router = router
        self.shares = shares
        self.mode: RoutingMode = router.config.mode

    def install(self, hooks: Hooks, *, learn: bool) -> None:
        """Join the pipeline. ``learn``: also watch served calls' cache use
        (after governance's completion hook, which measures it)."""
        hooks.route.append(self.route)
        if learn:
            hooks.after_completion.append(self.completed)

    def route(self, ctx: CallContext) -> ResolvedModel | None:
        """Decide for a chat call; the model to serve instead, when enforced."""
        request = ctx.request
        if not isinstance(request, ChatRequest):
            return None
        mode = request.route or self.mode
        if mode == "off":
            if request.hint is not None:
                # A misspelt hint fails now, not on the day routing is on.
                self.router.hint_of(request.hint)
            return None
        decision, chosen, estimate = self.router.decide(
            request, ctx.model, ctx.caller, mode, request.hint
        )
        ctx.routing = decision
        ctx.estimate, ctx.estimate_for = estimate, ctx.model.upstream
        if mode == "enforced" and chosen is not ctx.model:
            return chosen
        return None

    def completed(self, ctx: CallContext, completion: Completion) -> None:
        """Fold a served call's cache use into its model's share."""
        usage = ctx.usage
        if usage is not None and completion.complete:
            model = completion.candidate.model
            self.shares.observe((model.provider.id, model.id), usage)
