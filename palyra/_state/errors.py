"""The error of shared state (kept here, as the scheduler keeps its own in
``palyra._cron.errors``; both are in the one tree under `PalyraError`)."""

from __future__ import annotations

from typing import Any

from .._exceptions import _CallContextError

__all__ = ["StateUnavailableError"]


class StateUnavailableError(_CallContextError):
    """Shared state (Redis) could not be reached when a call needed it, and
    its policy is ``fail_closed``: nothing was sent (issue 16).

    Attributes:
        backend: ``"redis"``.
        target: Where it was looked for, ``host:port`` (never a password).
        operation: What could not be done, e.g. ``"reserve"``.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        target: str,
        operation: str,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.backend, self.target, self.operation = backend, target, operation
