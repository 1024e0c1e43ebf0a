"""A streaming ``multipart/form-data`` parser (RFC 7578) for uploads.

It is fed the body chunk by chunk as the server receives it, so a part's
bytes are kept as they arrive and the body is never buffered whole before it
is parsed; the caller's byte limit stops an oversized upload at the chunk
that passes it. Part headers, the number of parts and plain (non-file) fields
have their own small limits, so a hostile body cannot grow any of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from ._errors import Problem

__all__ = ["FormPart", "MultipartParser", "boundary_of"]

MAX_PARTS = 64
MAX_HEADER_BYTES = 8 * 1024  # one part's header block
MAX_FIELD_BYTES = 64 * 1024  # a part that is not a file
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,70}$")  # RFC 2046 bchars
_PARAM = re.compile(r';\s*([A-Za-z0-9_\-*]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')

_PREAMBLE, _HEADERS, _DATA, _AFTER, _DONE = range(5)


def _bad(message: str, param: str | None = None) -> Problem:
    return Problem(400, message, code="invalid_multipart", param=param)


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type (400 otherwise)."""
    kind, params = _split_header(content_type or "")
    if kind != "multipart/form-data":
        raise Problem(
            400,
            "the body must be multipart/form-data (send the file as a form upload)",
            code="invalid_content_type",
        )
    boundary = params.get("boundary", "")
    if not _BOUNDARY.match(boundary) or boundary.endswith(" "):
        raise _bad("the multipart/form-data content type has no valid boundary")
    return boundary.encode("ascii")


@dataclass(slots=True)
class FormPart:
    """One form field: its name, its filename if it is a file, its bytes."""

    name: str
    filename: str | None = None
    content_type: str | None = None
    data: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        """The value of a plain field (400 if it is not UTF-8)."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"{self.name}: is not UTF-8 text", self.name) from None


class MultipartParser:
    """Feed it the body's chunks, then `finish` for the parts in order.

    Args:
        boundary: From `boundary_of`.
    """

    def __init__(self, boundary: bytes) -> None:
        # The body's first delimiter has no CRLF before it; starting the
        # buffer with one lets every delimiter be found the same way.
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self._parts: list[FormPart] = []
        self._current: FormPart | None = None

    def feed(self, chunk: bytes) -> None:
        """Parse as much of the body as has arrived."""
        if self._state == _DONE:
            return  # an epilogue after the last delimiter is ignored
        self._buffer += chunk
        while self._step():
            pass

    def finish(self) -> list[FormPart]:
        """The parts, once the whole body has been fed (400 if it ended early)."""
        if self._state != _DONE:
            raise _bad("the multipart body ended before its closing boundary")
        return self._parts

    def _step(self) -> bool:
        """Advance one state if the buffer allows; False: wait for more."""
        if self._state == _PREAMBLE:
            return self._skip_preamble()
        if self._state == _AFTER:
            return self._after_delimiter()
        if self._state == _HEADERS:
            return self._read_headers()
        if self._state == _DATA:
            return self._read_data()
        return False

    def _skip_preamble(self) -> bool:
        at = self._buffer.find(self._delimiter)
        if at < 0:
            keep = len(self._delimiter) - 1  # a delimiter may straddle chunks
            if len(self._buffer) > keep:
                del self._buffer[: len(self._buffer) - keep]
            return False
        del self._buffer[: at + len(self._delimiter)]
        self._state = _AFTER
        return True

    def _after_delimiter(self) -> bool:
        # "--" closes the body; otherwise optional padding, then CRLF
        if len(self._buffer) < 2:
            return False
        if self._buffer[:2] == b"--":
            self._state = _DONE
            self._buffer.clear()
            return False
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 256:
                raise _bad("a multipart boundary line is malformed")
            return False
        if self._buffer[:end].strip(b" \t"):
            raise _bad("a multipart boundary line is malformed")
        del self._buffer[: end + 2]
        if len(self._parts) >= MAX_PARTS:
            raise _bad(f"the form has more than {MAX_PARTS} parts")
        self._state = _HEADERS
        return True

    def _read_headers(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise _bad("a form part's headers are too large")
            return False
        if end > MAX_HEADER_BYTES:
            raise _bad("a form part's headers are too large")
        block = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        self._current = _part_of(block)
        self._parts.append(self._current)
        self._state = _DATA
        return True

    def _read_data(self) -> bool:
        part = self._current
        assert part is not None  # set with the state
        at = self._buffer.find(self._delimiter)
        if at < 0:
            # keep what may be the start of a delimiter; the rest is data
            cut = len(self._buffer) - (len(self._delimiter) - 1)
            if cut > 0:
                self._take(part, cut)
            return False
        self._take(part, at)
        del self._buffer[: len(self._delimiter)]
        self._current = None
        self._state = _AFTER
        return True

    def _take(self, part: FormPart, size: int) -> None:
        part.data += self._buffer[:size]
        del self._buffer[:size]
        if part.filename is None and len(part.data) > MAX_FIELD_BYTES:
            raise _bad(
                f"{part.name}: a form field is limited to {MAX_FIELD_BYTES:,} bytes",
                part.name,
            )


def _part_of(block: bytes) -> FormPart:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("a form part's headers are not UTF-8") from None
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise _bad("a form part has a malformed header line")
        headers[name.strip().lower()] = value.strip()
    kind, params = _split_header(headers.get("content-disposition", ""))
    if kind != "form-data" or not params.get("name"):
        raise _bad("a form part has no Content-Disposition: form-data; name=...")
    filename = params.get("filename*") or params.get("filename")
    return FormPart(
        name=params["name"],
        filename=filename,
        content_type=headers.get("content-type"),
    )


def _split_header(value: str) -> tuple[str, dict[str, str]]:
    """``text/x; a=1; b="two"`` -> (``text/x``, {a: 1, b: two})."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            # Only \" and \\ are escapes: browsers send a Windows path's
            # backslashes as they are (RFC 7578 4.2), C:\dir\a.wav stays whole.
            raw = re.sub(r'\\([\\"])', r"\1", raw[1:-1])
        if name.endswith("*"):
            raw = _extended(raw)
        params[name] = raw
    return kind.strip().lower(), params


def _extended(raw: str) -> str:
    """An RFC 5987 value: ``charset'language'percent-encoded``."""
    charset, _, rest = raw.partition("'")
    if charset.lower() not in ("utf-8", "iso-8859-1"):
        raise _bad("a form part's filename* names an unknown charset")
    try:
        return unquote(rest.partition("'")[2], encoding=charset, errors="strict")
    except UnicodeDecodeError:
        raise _bad("a form part's filename* is not valid in its charset") from None
