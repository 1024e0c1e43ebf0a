"""The SSE decoder's bounds: time linear in the bytes fed, and events no
larger than ``max_event_bytes`` (`palyra._providers.sse`)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Iterable

import pytest

from palyra._providers.sse import EventTooLarge, ServerSentEvent, SSEDecoder

CAP = 1000
READ = 64 * 1024
MiB = 1024 * 1024
FEEDS = [pytest.param("whole", id="whole"), pytest.param("bytes", id="bytes")]


def pieces(raw: bytes, how: str) -> list[bytes]:
    """``raw`` in one read, or one byte per read."""
    return [raw] if how == "whole" else [raw[i : i + 1] for i in range(len(raw))]


def decode(reads: Iterable[bytes], cap: int | None = CAP) -> list[ServerSentEvent]:
    """Every event of ``reads``, then of the end of input."""
    decoder = SSEDecoder(max_event_bytes=cap)
    events: list[ServerSentEvent] = []
    for read in reads:
        events.extend(decoder.feed(read))
    return events + decoder.flush()


def fed_before_raise(decoder: SSEDecoder, read: bytes, times: int) -> int:
    """Feed ``read`` up to ``times`` times; the bytes fed before
    `EventTooLarge` (the test fails if it is never raised)."""
    fed = 0
    for _ in range(times):
        try:
            decoder.feed(read)
        except EventTooLarge:
            return fed
        fed += len(read)
    pytest.fail(f"no EventTooLarge after {fed} bytes")


def data_line(size: int) -> bytes:
    """A ``data:`` line of ``size`` bytes, line break not counted."""
    return b"data: " + b"a" * (size - len(b"data: "))


@pytest.mark.parametrize("how", FEEDS)
def test_an_event_at_the_cap_is_decoded(how: str) -> None:
    """An event of exactly ``max_event_bytes`` passes, in one read or many."""
    events = decode(pieces(data_line(CAP) + b"\n\n", how))
    assert [len(e.data) for e in events] == [CAP - 6]


@pytest.mark.parametrize("how", FEEDS)
def test_one_byte_past_the_cap_raises(how: str) -> None:
    """One byte more raises `EventTooLarge` naming the cap, whether the line
    arrived whole or is still unfinished."""
    for raw in (data_line(CAP + 1) + b"\n\n", data_line(CAP + 1)):
        with pytest.raises(EventTooLarge) as caught:
            decode(pieces(raw, how))
        assert caught.value.limit == CAP
        assert str(caught.value) == f"server-sent event larger than {CAP} bytes"


@pytest.mark.parametrize("how", FEEDS)
def test_data_lines_of_one_event_add_up(how: str) -> None:
    """The cap bounds the event, not each line: its data lines add up (line
    breaks not counted), and the next event starts from nothing."""
    lines = [data_line(100)] * 10
    event = b"\n".join(lines) + b"\n\n"
    assert len(decode(pieces(event * 3, how))) == 3
    with pytest.raises(EventTooLarge):
        decode(pieces(event.replace(b"\n\n", b"a\n\n"), how))


def test_data_lines_without_a_blank_line_trip_the_cap() -> None:
    """Megabytes of ``data:`` lines that never end their event raise once the
    event passes the cap, long before the input ends."""
    decoder = SSEDecoder(max_event_bytes=64 * 1024)
    body = b"data: x\n" * (READ // 8)
    fed = fed_before_raise(decoder, body, times=100)
    assert fed == len(body)  # 57 344 bytes of lines held; the second read raised


def test_an_endless_line_raises_holding_at_most_the_cap() -> None:
    """A line that never ends raises on the read that takes it past the cap,
    and what the decoder held then was within the cap."""
    cap = 1024 * 1024
    decoder = SSEDecoder(max_event_bytes=cap)
    decoder.feed(b"data: ")
    fed = 6 + fed_before_raise(decoder, b"x" * READ, times=10 * cap // READ)
    assert fed <= cap < fed + READ  # the raising read took it past
    assert sum(map(len, decoder._parts)) <= cap


def test_lines_that_are_not_kept_do_not_add_up() -> None:
    """Comments, ``event:`` and ``id:`` lines are not kept, so only each on
    its own counts: keep-alives never trip the cap, a huge one does."""
    keepalives = b": keep-alive\n" * 1000 + b"event: x\nid: 1\n" * 100
    assert decode([keepalives + b"data: a\n\n"]) == [
        ServerSentEvent(data="a", event="x", id="1")
    ]
    for line in (b":", b"event: ", b"id: "):
        with pytest.raises(EventTooLarge):
            decode([line + b"x" * CAP + b"\n"])


def test_crlf_and_cr_lines_count_without_their_line_breaks() -> None:
    """Line breaks of any style are not part of the size."""
    for eol in (b"\r\n", b"\r"):
        raw = data_line(CAP // 2) + eol + data_line(CAP // 2) + eol + eol
        for how in ("whole", "bytes"):
            assert len(decode(pieces(raw, how))) == 1


def test_no_cap_by_default() -> None:
    """A decoder made without a bound keeps any event."""
    assert len(decode([data_line(10 * CAP) + b"\n\n"], cap=None)) == 1


def _decode_time(megabytes: int) -> float:
    """Seconds to decode ``megabytes`` of one line in 64 KiB reads (best of 5)."""
    read = b"x" * READ
    best = float("inf")
    for _ in range(5):
        decoder = SSEDecoder()
        decoder.feed(b"data: ")
        gc.disable()  # a collection inside one run is noise, not the decoder
        try:
            started = time.perf_counter()
            for _ in range(megabytes * 1024 * 1024 // READ):
                decoder.feed(read)
            best = min(best, time.perf_counter() - started)
        finally:
            gc.enable()
    return best


def test_decoding_time_is_linear() -> None:
    """Four times the bytes take about four times as long, not sixteen: a line
    spanning many reads is not copied again on each read. (The decoder that
    re-joined its buffer on each read took 15 to 25 times as long for 16 MB
    as for 4.)"""
    # Sizes large enough that a millisecond of noise (a shared machine) is
    # not most of the small run.
    small, large = _decode_time(16), _decode_time(64)
    assert large < 8 * small, (small, large)


def test_many_short_data_lines_take_the_memory_of_their_bytes() -> None:
    """An event of many short ``data:`` lines holds about its bytes, not a
    Python object per line (which took six to seven times as much): the cap
    bounds memory, not only a count."""
    cap = 4 * MiB
    body = b"data: xy\n" * (READ // 9)
    decoder = SSEDecoder(max_event_bytes=cap)
    tracemalloc.start()
    try:
        for _ in range(cap // len(body) - 1):
            decoder.feed(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoder.feed(b"\n")[0].data.startswith("xy\nxy\n")
    assert peak < 1.5 * cap, peak
