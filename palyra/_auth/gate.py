"""Auth profiles around a call: refresh what is owed before it, and once
after a 401 (`CallGate`).

The checks cost a couple of attribute reads when nothing is owed; the work,
when there is some, is a flow run on the call's own side (sync or async), so
an event loop is never blocked by a refresh.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from .book import ProfileBook
from .refresh import refresh_owed
from .remote import Deadline
from .steps import AsyncSend, AuthFlow, Send, adrive, drive

__all__ = ["REFRESH_BUDGET", "CallGate"]

REFRESH_BUDGET = 10.0
"""Seconds the token requests of a refresh before (or after a 401 in) a call
may take; waits for the profile file's lock add at most its own timeout."""


class CallGate:
    """Decides whether a call needs a refresh first, and runs it.

    Args:
        book: The profiles of the client.
        eager: Whether calls rely on profiles from the start (a provider names
            an ``auth_profile``, or has no other credential): the profile file
            is then read before the first call, off the event loop.
        window: Seconds before expiry from which a token is refreshed first
            (``auth.refresh_window``).
    """

    def __init__(
        self,
        book: ProfileBook,
        eager: bool,
        window: float,
        send: Send,
        asend: AsyncSend,
        sleep: Callable[[float], None],
        asleep: Callable[[float], Awaitable[None]] | None,
    ) -> None:
        self.book = book
        self.eager = eager
        self.window = window
        self._send = send
        self._asend = asend
        self._sleep = sleep
        self._asleep = asleep

    def ahead(self, agent: str | None) -> AuthFlow[bool] | None:
        """The refresh a call for ``agent`` needs first, if any."""
        book = self.book
        if not book.loaded:
            if not self.eager:
                return None
        elif (
            agent in book.prefetched
            and not book.stale
            and book.due_by(self.window) > time.time()
        ):
            return None
        return refresh_owed(
            book, agent, Deadline(REFRESH_BUDGET), force=False, window=self.window
        )

    def after_refusal(
        self, agent: str | None, provider: str | None
    ) -> AuthFlow[bool] | None:
        """After a 401 from ``provider``: the refresh of the OAuth tokens of
        that provider the 401 marked, if any (then the call is made again)."""
        if not self.book.stale or provider is None:
            return None
        return refresh_owed(
            self.book, agent, Deadline(REFRESH_BUDGET), force=True, provider=provider
        )

    def drive(self, flow: AuthFlow[bool]) -> bool:
        """Run a refresh flow in this thread."""
        return drive(flow, self._send, self._sleep)

    async def adrive(self, flow: AuthFlow[bool]) -> bool:
        """Run a refresh flow in this task."""
        return await adrive(flow, self._asend, self._asleep)
