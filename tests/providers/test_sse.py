"""The incremental server-sent-events decoder (`palyra._providers.sse`)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from palyra._providers.sse import ServerSentEvent, SSEDecoder
from tests.upstream import load_recorded

RECORDED = [
    pytest.param("openai/chat_stream_length.sse", id="length"),
    pytest.param("openai/chat_stream_parallel_tools.sse", id="parallel_tools"),
    pytest.param("openai/chat_stream_refusal_logprobs.sse", id="refusal_logprobs"),
    pytest.param("openai/chat_stream_text_long.sse", id="text_long"),
]
ENDINGS = [
    pytest.param("\n", id="lf"),
    pytest.param("\r\n", id="crlf"),
    pytest.param("\r", id="cr"),
]


def decode(pieces: Iterable[bytes]) -> tuple[list[ServerSentEvent], bool]:
    """Events of all pieces fed in order then flushed at end of input, and what
    `close()` reported."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return events, decoder.close()


def with_endings(text: str, eol: str) -> bytes:
    """``text`` written with LF line endings, re-encoded with ``eol``."""
    return text.replace("\n", eol).encode()


def data_of(events: list[ServerSentEvent]) -> list[str]:
    """The data field of each event."""
    return [event.data for event in events]


@pytest.mark.parametrize("eol", ENDINGS)
def test_line_endings_give_the_same_events(eol: str) -> None:
    """LF, CRLF and CR line endings decode to the same events."""
    text = "data: one\n\nevent: named\ndata: two\n\ndata: three\n\n: keep-alive\n\n"
    events, leftover = decode([with_endings(text, eol)])
    assert events == [
        ServerSentEvent(data="one"),
        ServerSentEvent(data="two", event="named"),
        ServerSentEvent(data="three"),
    ]
    assert leftover is False


def test_cr_terminated_final_event_is_dispatched() -> None:
    """An event whose blank line is the input's final CR is dispatched by `flush()`."""
    decoder = SSEDecoder()
    # The final CR could be half of a CRLF, so feed() holds it back...
    assert data_of(decoder.feed(b"data: first\r\rdata: last\r\r")) == ["first"]
    # ...and the end of input settles it.
    assert data_of(decoder.flush()) == ["last"]
    assert decoder.flush() == []
    assert decoder.close() is False


def test_flush_dispatches_what_is_pending() -> None:
    """`flush()` dispatches the pending event as if a blank line had ended the
    body (recorded streams end without one); parsers judge a cut event."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.flush() == [ServerSentEvent(data="a")]
    assert decoder.close() is False
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [ServerSentEvent(data="a")]
    assert decoder.flush() == [ServerSentEvent(data="b")]
    assert decoder.close() is False
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: cut mid-li") == [ServerSentEvent(data="a")]
    assert decoder.flush() == [ServerSentEvent(data="cut mid-li")]
    assert decoder.close() is False


def test_crlf_split_across_feeds_is_one_line_break() -> None:
    """A CRLF whose CR and LF arrive in different reads ends one line, not two."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # A second line break must follow before the event dispatches: the LF that
    # completes "\r\n" is not an empty line of its own.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [ServerSentEvent(data="a\nb")]
    assert decoder.close() is False


def test_crlf_split_between_events() -> None:
    """An event whose final CRLF is split dispatches once the LF arrives."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\n\r") == []
    assert data_of(decoder.feed(b"\ndata: b\r\n\r\n")) == ["a", "b"]
    assert decoder.close() is False


@pytest.mark.parametrize(
    "eol", [pytest.param("\n", id="lf"), pytest.param("\r\n", id="crlf")]
)
@pytest.mark.parametrize("name", RECORDED)
def test_recorded_stream_fed_byte_by_byte(name: str, eol: str) -> None:
    """A recorded stream fed one byte at a time gives the events of a single feed."""
    raw = with_endings(load_recorded(name).decode(), eol)
    whole, leftover_whole = decode([raw])
    single, leftover_single = decode(raw[i : i + 1] for i in range(len(raw)))
    assert single == whole
    assert leftover_single is leftover_whole is False
    assert whole[-1] == ServerSentEvent(data="[DONE]")
    assert len(whole) == raw.count(b"data: ")


@pytest.mark.parametrize(
    "eol", [pytest.param("\n", id="lf"), pytest.param("\r\n", id="crlf")]
)
def test_recorded_stream_split_at_every_boundary(eol: str) -> None:
    """Splitting a recorded stream in two at any byte gives the same events."""
    raw = with_endings(load_recorded("openai/chat_stream_length.sse").decode(), eol)
    whole, _ = decode([raw])
    for cut in range(len(raw) + 1):
        events, leftover = decode([raw[:cut], raw[cut:]])
        assert events == whole, f"split at byte {cut}"
        assert leftover is False


def test_comment_lines_are_ignored() -> None:
    """Comment lines (keep-alives) produce no events and do not break an event."""
    raw = b": keep-alive\n\n:\n\ndata: a\n: in the middle\ndata: b\n\n: bye\n\n"
    events, leftover = decode([raw])
    assert events == [ServerSentEvent(data="a\nb")]
    assert leftover is False


def test_multiline_data_is_joined_with_newlines() -> None:
    """Several data lines make one event, joined by newlines."""
    raw = b'data: {"a":\ndata:  1}\ndata\ndata:x\n\n'
    events, _ = decode([raw])
    # One leading space is stripped; "data" alone is an empty line of data.
    assert data_of(events) == ['{"a":\n 1}\n\nx']


def test_event_names_apply_to_one_event() -> None:
    """An ``event:`` field names only the event it belongs to."""
    raw = b"event: error\ndata: {}\n\ndata: plain\n\nevent: lone\n\ndata: after\n\n"
    events, _ = decode([raw])
    assert [(e.event, e.data) for e in events] == [
        ("error", "{}"),
        ("message", "plain"),
        ("message", "after"),
    ]


def test_id_and_unknown_fields() -> None:
    """``id`` is kept for later events; unknown fields such as ``retry`` are ignored."""
    raw = b"id: 7\nretry: 1000\nfoo: bar\ndata: a\n\ndata: b\n\n"
    events, _ = decode([raw])
    assert events == [
        ServerSentEvent(data="a", id="7"),
        ServerSentEvent(data="b", id="7"),
    ]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    """Empty lines with no pending data produce no events."""
    events, leftover = decode([b"\n\n\r\n\n", b"\n"])
    assert events == []
    assert leftover is False


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        pytest.param(b"", False, id="clean"),
        pytest.param(b"data: partial", True, id="unterminated-line"),
        pytest.param(b"data: partial\n", True, id="no-blank-line"),
        pytest.param(b"data: partial\r\n", True, id="no-blank-line-crlf"),
        pytest.param(b"\n", False, id="extra-blank-line"),
    ],
)
def test_close_reports_leftover_partial_event(tail: bytes, expected: bool) -> None:
    """`close()` says whether an unfinished event was left in the buffer."""
    decoder = SSEDecoder()
    assert data_of(decoder.feed(b"data: done\n\n" + tail)) == ["done"]
    assert decoder.close() is expected


def test_close_resets_the_decoder() -> None:
    """After `close()`, leftover bytes are gone and a new stream decodes cleanly."""
    decoder = SSEDecoder()
    decoder.feed(b"event: x\ndata: stale")
    assert decoder.close() is True
    assert decoder.feed(b"data: fresh\n\n") == [ServerSentEvent(data="fresh")]
    assert decoder.close() is False


def test_utf8_multibyte_split_across_feeds() -> None:
    """A multibyte UTF-8 character split across reads decodes intact."""
    text = "data: héllo — 世界 😀\n\n"
    raw = text.encode()
    expected = [ServerSentEvent(data="héllo — 世界 😀")]
    for cut in range(len(raw) + 1):
        events, leftover = decode([raw[:cut], raw[cut:]])
        assert events == expected, f"split at byte {cut}"
        assert leftover is False
    events, _ = decode(raw[i : i + 1] for i in range(len(raw)))
    assert events == expected


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([b"\xef\xbb\xbfdata: first\n\n"], id="whole"),
        pytest.param([b"\xef\xbb", b"\xbfdata: first\n\n"], id="split"),
        pytest.param([b"\xef", b"\xbb", b"\xbf", b"data: first\n\n"], id="bytes"),
    ],
)
def test_leading_byte_order_mark_is_ignored(pieces: list[bytes]) -> None:
    """A UTF-8 BOM at the very start of the stream is ignored (WHATWG rule)."""
    events, leftover = decode(pieces)
    assert data_of(events) == ["first"]
    assert leftover is False


def test_byte_order_mark_is_only_stripped_at_the_start() -> None:
    """A BOM later in the stream is data, not something to strip."""
    events, _ = decode([b"data: a\n\n", b"data: \xef\xbb\xbfb\n\n"])
    assert data_of(events) == ["a", "\ufeffb"]
