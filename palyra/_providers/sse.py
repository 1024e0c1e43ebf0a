"""An incremental server-sent-events decoder (bytes in, events out).

It follows the WHATWG event-stream rules that matter for LLM APIs: ``\\n``,
``\\r\\n`` and ``\\r`` line endings, comment lines (``:`` keep-alives), several
``data:`` lines joined by newlines, named ``event:`` types, and events split at
any byte across network reads.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__: list[str] = []

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Turn network reads into events; call `feed` per read and `close` at EOF."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_started")

    def __init__(self) -> None:
        self._started = False
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one read; returns the events it completed (possibly none)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = buffer  # too short to tell whether it is a BOM
                return []
            self._started = True
            buffer = buffer.removeprefix(_BOM)
        if b"\r" in buffer:
            # A trailing CR may be the first half of a CRLF split across reads.
            keep_cr = buffer.endswith(b"\r")
            if keep_cr:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buffer += b"\r"
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        events: list[ServerSentEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[ServerSentEvent]:
        """At end of body: dispatch what is pending as if the body had ended
        with a blank line (recorded and real streams often end without one).

        The last event may then be cut short; parsers treat an event from
        `flush` that does not parse as an interrupted stream, not as garbage.
        """
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            event = self._dispatch()
            if event is not None:
                events.append(event)
        return events

    def close(self) -> bool:
        """End of stream. Returns True when an unfinished event was left over."""
        leftover = bool(self._buffer.strip(b"\r")) or bool(self._data)
        self._buffer = b""
        self._data = []
        self._event = None
        return leftover

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = None
            return None
        event = ServerSentEvent(
            data="\n".join(self._data), event=self._event or "message", id=self._id
        )
        self._data = []
        self._event = None
        return event
