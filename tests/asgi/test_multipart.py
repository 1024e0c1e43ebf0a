"""The streaming multipart parser (issue 13): bodies from a real encoder
(httpx's), fed in every possible split, give the same parts; malformed and
oversized bodies are refused with a 400 naming what is wrong."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palyra.asgi._errors import Problem
from palyra.asgi._multipart import (
    MAX_FIELD_BYTES,
    MAX_HEADER_BYTES,
    MAX_PARTS,
    MultipartParser,
    boundary_of,
)


def encoded(
    data: dict[str, Any], files: dict[str, Any], boundary: bytes | None = None
) -> tuple[bytes, bytes]:
    headers = {}
    if boundary is not None:
        headers["content-type"] = "multipart/form-data; boundary=" + boundary.decode()
    request = httpx.Request(
        "POST", "http://x.test", data=data, files=files, headers=headers
    )
    return request.read(), boundary_of(request.headers["content-type"])


def parse(body: bytes, boundary: bytes, sizes: list[int] | None = None) -> list[Any]:
    parser = MultipartParser(boundary)
    at = 0
    for size in sizes or [len(body)]:
        parser.feed(body[at : at + size])
        at += size
    parser.feed(body[at:])
    return [
        (p.name, p.filename, p.content_type, bytes(p.data)) for p in parser.finish()
    ]


AUDIO = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n" + b"\r\n" * 5


def test_a_real_encoder_s_body_parses() -> None:
    body, boundary = encoded(
        {"model": "whisper", "language": "en"},
        {"file": ("clip.wav", AUDIO, "audio/wav")},
    )
    assert parse(body, boundary) == [
        ("model", None, None, b"whisper"),
        ("language", None, None, b"en"),
        ("file", "clip.wav", "audio/wav", AUDIO),
    ]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=97), max_size=200),
    data=st.binary(max_size=3000),
)
def test_any_split_of_the_body_gives_the_same_parts(
    sizes: list[int], data: bytes
) -> None:
    body, boundary = encoded(
        {"prompt": "hello\r\nworld"}, {"file": ("a.mp3", data, "audio/mpeg")}
    )
    assert parse(body, boundary, sizes) == parse(body, boundary)
    assert parse(body, boundary, [1] * len(body))[-1][3] == data


def test_preamble_epilogue_padding_and_extended_filenames() -> None:
    boundary = b"b0und"
    body = (
        b"ignored preamble\r\n--b0und  \r\n"
        b'Content-Disposition: form-data; name="file"; '
        b"filename*=UTF-8''na%C3%AFve.wav\r\n\r\n"
        b"RIFF\r\n--b0und--\r\nignored epilogue"
    )
    assert parse(body, boundary) == [("file", "naïve.wav", None, b"RIFF")]


def test_a_browser_s_windows_path_keeps_its_backslashes() -> None:
    body = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="file"; '
        b'filename="C:\\dir\\a \\"x\\".wav"'
        b"\r\n\r\nRIFF\r\n--b--\r\n"
    )
    assert parse(body, b"b")[0][1] == 'C:\\dir\\a "x".wav'


def test_a_quoted_boundary_is_read() -> None:
    assert boundary_of('multipart/form-data; boundary="a b:c"') == b"a b:c"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "x" * 71,
        "multipart/form-data; boundary=bad\x00",
    ],
)
def test_a_content_type_without_a_usable_boundary_is_400(
    content_type: str | None,
) -> None:
    with pytest.raises(Problem) as refused:
        boundary_of(content_type)
    assert refused.value.status == 400


def part(headers: bytes, value: bytes = b"v") -> bytes:
    return b"--B\r\n" + headers + b"\r\n\r\n" + value + b"\r\n"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"--B\r\n", "ended before"),
        (part(b'Content-Disposition: form-data; name="a"'), "ended before"),
        (part(b"Content-Type: text/plain") + b"--B--", "Content-Disposition"),
        (part(b"Content-Disposition: attachment") + b"--B--", "Content-Disposition"),
        (part(b"no colon here") + b"--B--", "malformed header"),
        (part(b"Content-Disposition: form-data; name=\xff") + b"--B--", "UTF-8"),
        (b"--Bjunk\r\n", "boundary line"),
        (
            part(b"Content-Disposition: form-data; name=a; filename*=koi8'x'%41")
            + b"--B--",
            "charset",
        ),
        (
            part(b"Content-Disposition: form-data; name=a; filename*=utf-8''%ff")
            + b"--B--",
            "not valid",
        ),
        (part(b"X: " + b"y" * MAX_HEADER_BYTES), "headers are too large"),
        (
            part(b"Content-Disposition: form-data; name=big", b"x" * MAX_FIELD_BYTES)
            + b"x--B--",
            "limited to",
        ),
        (
            part(b"Content-Disposition: form-data; name=a") * (MAX_PARTS + 1)
            + b"--B--",
            f"more than {MAX_PARTS}",
        ),
    ],
)
def test_malformed_or_oversized_parts_are_refused(body: bytes, says: str) -> None:
    with pytest.raises(Problem) as refused:
        parse(body, b"B")
    assert refused.value.status == 400
    assert says in refused.value.message


def test_a_file_part_is_not_held_to_the_field_limit() -> None:
    big = b"\x00" * (MAX_FIELD_BYTES * 3)
    body, boundary = encoded({}, {"file": ("big.wav", big, "audio/wav")})
    assert parse(body, boundary, [4096] * (len(body) // 4096))[0][3] == big


def test_the_buffer_stays_small_while_a_file_streams_in() -> None:
    """The parser keeps a file's bytes as they come; what it holds back is at
    most a possible delimiter, never the body so far."""
    body, boundary = encoded({}, {"file": ("big.wav", b"\x01" * 500_000, "audio/wav")})
    parser = MultipartParser(boundary)
    largest = 0
    for at in range(0, len(body), 8192):
        parser.feed(body[at : at + 8192])
        largest = max(largest, len(parser._buffer))
    assert largest < 8192 + len(boundary) + 8
    assert len(parser.finish()[0].data) == 500_000
