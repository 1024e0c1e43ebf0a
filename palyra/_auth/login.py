"""The loopback half of `login_oauth`: a one-shot HTTP listener on 127.0.0.1.

The authorization server sends the browser back to ``redirect_uri``; this
listener takes that one request, hands its URL to the flow, and answers the
browser once the flow says how the sign-in ended, with a small page that
holds no token. It only ever binds a loopback address, every wait has a
deadline, and `close` always releases the port.
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .._exceptions import InvalidRequestError
from .steps import Flight

__all__ = ["CallbackListener", "loopback_redirect"]

_ANSWER_WAIT = 30.0  # seconds the browser's request waits for the outcome
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def loopback_redirect(redirect_uri: str | None) -> tuple[str, int, str]:
    """(host, port, path) to listen on for ``redirect_uri`` (port 0: any).

    Raises:
        InvalidRequestError: the redirect URI is not http to loopback.
    """
    if redirect_uri is None:
        return "127.0.0.1", 0, "/callback"
    parts = urlsplit(redirect_uri)
    host = parts.hostname or ""
    if parts.scheme != "http" or host not in _LOOPBACK:
        raise InvalidRequestError(
            "redirect_uri: login_oauth listens on loopback, so the redirect URI"
            f" must be http://127.0.0.1:<port>/...; got {redirect_uri!r} (use"
            " start_oauth and complete_oauth for a web callback)"
        )
    bind = "::1" if host in ("::1", "[::1]") else "127.0.0.1"
    return bind, parts.port or 0, parts.path or "/"


class CallbackListener:
    """Takes the one redirect of a sign-in on a loopback port."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.path = path
        self.arrival = Flight()  # lands when the browser comes back
        self.waiting = False  # the flow waits for the outcome (not the opener)
        self._answered = threading.Event()
        self._url: str | None = None
        self._page = _page("palyra", "The sign-in ended. You can close this window.")
        try:
            self._server = _Server((host, port), _Handler, self)
        except OSError as exc:
            raise InvalidRequestError(
                f"redirect_uri: cannot listen on {host}:{port} for the sign-in"
                f" callback ({exc.strerror or type(exc).__name__}); free the port,"
                " or leave redirect_uri unset to use any free one"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="palyra-oauth-callback",
            daemon=True,
        )
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        """The URI the authorization server must send the browser back to."""
        return f"{_origin(self._server)}{self.path}"

    @property
    def url(self) -> str:
        """The callback's URL (once `arrival` has landed)."""
        return self._url or ""

    def answer(self, ok: bool, message: str) -> None:
        """Say how the sign-in ended to the browser waiting on the callback."""
        title = "Signed in" if ok else "Sign-in failed"
        self._page = _page(title, message)
        self._answered.set()

    def close(self) -> None:
        """Stop listening and free the port (safe to call twice)."""
        self._answered.set()
        self.arrival.land()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _take(self, url: str) -> bytes | None:
        """A request for the callback path: its URL is the callback (the first
        one only); the page waits for the outcome."""
        if not self.arrival.landed:
            self._url = url
            self.arrival.land()
        # The page says how it ended only if the flow is there to say it: an
        # opener that follows the redirect itself must not wait on itself.
        if self.waiting:
            self._answered.wait(_ANSWER_WAIT)
        return self._page


def _origin(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    name = host.decode() if isinstance(host, bytes) else str(host)
    return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


def _page(title: str, message: str) -> bytes:
    text = html.escape(message)
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{text}</p>"
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, owner: Any) -> None:
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        self.owner: CallbackListener = owner
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        if urlsplit(self.path).path != owner.path:
            self._reply(404, _page("Not found", "This is palyra's sign-in listener."))
            return
        page = owner._take(_origin(self.server) + self.path)
        self._reply(200, page or b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.send_header("referrer-policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the authorization code: never logged.
        return
