"""httpcore's connection pools, with their request placement made linear.

httpcore (1.0) places requests on connections in
``_assign_requests_to_connections``, called twice per request. For every idle
connection it counts all connections again, so each call costs the square of
the pool's size: with 64 kept-alive connections to one upstream, about a
millisecond of CPU per request, which caps a gateway on one core at a few
hundred requests per second. The subclasses here make the same decisions in
the same order (the count it rebuilds is always ``len(self._connections)``),
in one pass. Where a future httpcore lacks the method, the override is never
called and httpcore's own placement stands.
"""

from __future__ import annotations

from typing import Any

import httpcore

__all__ = ["AsyncLinearPool", "LinearPool"]


def _place(pool: Any) -> list[Any]:
    """httpcore's placement, linear: drop closed, expired and surplus idle
    connections, then give each queued request a connection; returns those to
    close (the caller closes them outside the pool's lock, as httpcore does).
    """
    closing = []
    for connection in list(pool._connections):
        if connection.is_closed():
            pool._connections.remove(connection)
        elif connection.has_expired() or (
            connection.is_idle()
            and len(pool._connections) > pool._max_keepalive_connections
        ):
            pool._connections.remove(connection)
            closing.append(connection)
    for request in [r for r in pool._requests if r.is_queued()]:
        origin = request.request.url.origin
        connection = next(
            (
                c
                for c in pool._connections
                if c.can_handle_request(origin) and c.is_available()
            ),
            None,
        )
        if connection is None and len(pool._connections) >= pool._max_connections:
            idle = next((c for c in pool._connections if c.is_idle()), None)
            if idle is None:
                continue  # the request waits for a connection to free up
            pool._connections.remove(idle)
            closing.append(idle)
        if connection is None:
            connection = pool.create_connection(origin)
            pool._connections.append(connection)
        request.assign_to_connection(connection)
    return closing


class LinearPool(httpcore.ConnectionPool):
    """`httpcore.ConnectionPool` placing requests in linear time."""

    def _assign_requests_to_connections(self) -> list[Any]:
        return _place(self)


class AsyncLinearPool(httpcore.AsyncConnectionPool):
    """`httpcore.AsyncConnectionPool` placing requests in linear time."""

    def _assign_requests_to_connections(self) -> list[Any]:
        return _place(self)
