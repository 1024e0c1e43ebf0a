"""An incremental server-sent-events decoder (bytes in, events out).

It follows the WHATWG event-stream rules that matter for LLM APIs: ``\\n``,
``\\r\\n`` and ``\\r`` line endings, comment lines (``:`` keep-alives), several
``data:`` lines joined by newlines, named ``event:`` types, and events split at
any byte across network reads.

Decoding is linear in the bytes fed: each read is scanned once, and a line
that spans reads is kept as its parts and joined once, when it ends. An event
is bounded too (`SSEDecoder` ``max_event_bytes``): its ``data:`` lines plus
the line being read, counted as the bytes of those lines on the wire (field
names included, line breaks not); past the bound, `EventTooLarge` is raised
before more is kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__: list[str] = []

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str | None = None


class EventTooLarge(Exception):
    """An event grew past the decoder's ``max_event_bytes``.

    Attributes:
        limit: The bound, in bytes.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"server-sent event larger than {limit} bytes")
        self.limit = limit


class SSEDecoder:
    """Turn network reads into events; call `feed` per read and `close` at EOF.

    Args:
        max_event_bytes: The largest event kept (None: no bound).
    """

    __slots__ = (
        "_cr",
        "_data",
        "_event",
        "_head",
        "_held",
        "_id",
        "_kept",
        "_limit",
        "_lines",
        "_parts",
        "_started",
    )

    def __init__(self, max_event_bytes: int | None = None) -> None:
        # No bound is a bound no event reaches: one comparison either way.
        self._limit = sys.maxsize if max_event_bytes is None else max_event_bytes
        self._started = False
        self._head = b""  # the first bytes, until they tell whether a BOM starts
        self._parts: list[bytes] = []  # the unfinished line, as it arrived
        self._cr = False  # the line in _parts ended with a CR at the end of a read
        self._held = 0  # bytes in _parts
        self._kept = 0  # bytes of the event's data lines so far
        self._data: bytes | bytearray = b""  # the event's data lines, LF-joined
        self._lines = 0  # how many data lines it holds
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one read; returns the events it completed (possibly none).

        Raises:
            EventTooLarge: the event being read passed ``max_event_bytes``.
        """
        if not self._started:
            head = self._head + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._head = head  # too short to tell whether it is a BOM
                return []
            self._started = True
            self._head = b""
            chunk = head.removeprefix(_BOM)
        if self._cr and chunk:
            # The held CR ends the unfinished line; an LF right after it
            # belongs to it ("\r\n" split across reads).
            self._cr = False
            chunk = b"\r" + chunk
        if b"\r" in chunk:
            # A trailing CR may be the first half of a CRLF split across reads.
            if chunk.endswith(b"\r"):
                self._cr = True
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        limit = self._limit
        # No line of this read can pass the bound unless the whole read, on
        # top of the event so far, does: only then is each line checked.
        check = self._kept + self._held + len(chunk) > limit
        events: list[ServerSentEvent] = []
        if self._parts and lines:
            # Only the first line of a read can finish a line held from before.
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
            self._parts = []
            self._held = 0
        read_line = self._line  # bound once: the loop runs per line
        for line in lines:
            if check and self._kept + len(line) > limit:
                raise EventTooLarge(limit)
            event = read_line(line)
            if event is not None:
                events.append(event)
        if tail:
            self._keep(tail)
        return events

    def _keep(self, part: bytes) -> None:
        """Hold part of an unfinished line, within the bound."""
        held = self._held + len(part)
        if self._kept + held > self._limit:
            raise EventTooLarge(self._limit)
        self._parts.append(part)
        self._held = held

    def flush(self) -> list[ServerSentEvent]:
        """At end of body: dispatch what is pending as if the body had ended
        with a blank line (recorded and real streams often end without one).

        The last event may then be cut short; parsers treat an event from
        `flush` that does not parse as an interrupted stream, not as garbage.
        """
        pending = self._head or self._parts or self._cr
        events = self.feed(b"\n") if pending else []
        if self._lines:
            event = self._dispatch()
            if event is not None:
                events.append(event)
        return events

    def close(self) -> bool:
        """End of stream. Returns True when an unfinished event was left over."""
        leftover = bool(self._head or self._parts or self._lines)
        self._head = b""
        self._parts = []
        self._cr = False
        self._held = self._kept = 0
        self._data = b""
        self._lines = 0
        self._event = None
        return leftover

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        if raw.startswith(b"data: "):  # most lines: no split needed
            name, value = b"data", raw[6:]
        elif raw.startswith(b":"):
            return None
        else:
            # Split as bytes: ":" and " " are ASCII, so this is the split of
            # the decoded line, and data is decoded once per event.
            name, sep, value = raw.partition(b":")
            if sep and value.startswith(b" "):
                value = value[1:]
        if name == b"data":
            # One buffer, not a string per line: an event of many short lines
            # takes the memory its bytes do, not an object's worth per line.
            # The usual event has one line: it is kept as it came.
            if not self._lines:
                self._data = value
            else:
                if self._lines == 1:
                    self._data = bytearray(self._data)
                self._data += b"\n"
                self._data += value
            self._lines += 1
            self._kept += len(raw)  # kept until the event dispatches
        elif name == b"event":
            self._event = value.decode("utf-8", errors="replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", errors="replace")
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self._kept = 0
        if not self._lines:
            self._event = None
            return None
        event = ServerSentEvent(
            data=self._data.decode("utf-8", errors="replace"),
            event=self._event or "message",
            id=self._id,
        )
        self._data = b""
        self._lines = 0
        self._event = None
        return event
