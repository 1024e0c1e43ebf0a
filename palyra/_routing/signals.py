"""What a chat request is measured by: the score's signals, read off it.

`Scanner.measure` walks the messages once: it counts messages, image parts
and fenced code blocks, and finds the reasoning and analysis keywords in the
text of system, developer and user messages (what the caller asks, not what
a model answered). The prompt's tokens come from the tokenizer, counted by
the caller. Text past `SCAN_CHARS` is not scanned, so one request costs a
bounded time whatever its size; what each text holds is memoised, because a
conversation resends its history and system prompt with every request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SCAN_CHARS", "Scanner", "Signals", "find_keywords"]

SCAN_CHARS = 65_536
"""Characters of message text scanned for keywords and code fences."""

_ASKING = frozenset({"system", "developer", "user"})
_FENCES = ("```", "~~~")
_MEMO_CHARS = 4_000_000  # text held by a scanner's memo before it is reset


@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to build
class Signals:
    """The raw measurements of one request (`RoutingFeatures` without the
    weighted parts)."""

    prompt_tokens: int
    messages: int
    images: int
    tools: int
    json_mode: bool
    code_blocks: int
    keywords: tuple[str, ...]
    output_tokens: int


class Scanner:
    """Reads the signals of requests for one set of keywords; safe to share
    between threads (the memo is a dict: a race at worst scans twice)."""

    def __init__(self, keywords: Sequence[str]) -> None:
        self.keywords = tuple(keywords)
        self._index = {word: i for i, word in enumerate(self.keywords)}
        # text -> (fence marks, indices of the keywords found in it)
        self._memo: dict[str, tuple[int, tuple[int, ...]]] = {}
        self._held = 0

    def measure(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Any] | None,
        *,
        json_mode: bool,
        prompt_tokens: int,
        output_tokens: int,
    ) -> Signals:
        """The signals of a checked chat request."""
        fences = images = 0
        found: set[int] = set()
        left = SCAN_CHARS
        for message in messages:
            texts, pictures = _parts(message.get("content"))
            images += pictures
            asking = message.get("role") in _ASKING
            for text in texts:
                if left <= 0:
                    break
                text = text[:left]
                left -= len(text)
                marks, words = self._scan(text)
                fences += marks // 2  # a block opens and closes in one text
                if asking:
                    found.update(words)
        keywords = self.keywords
        return Signals(
            prompt_tokens=prompt_tokens,
            messages=len(messages),
            images=images,
            tools=len(tools) if tools else 0,
            json_mode=json_mode,
            code_blocks=fences,
            keywords=tuple(keywords[i] for i in sorted(found)),
            output_tokens=output_tokens,
        )

    def _scan(self, text: str) -> tuple[int, tuple[int, ...]]:
        known = self._memo.get(text)
        if known is not None:
            return known
        lowered = text.lower()
        words = find_keywords(lowered, self.keywords)
        made = (
            sum(text.count(fence) for fence in _FENCES),
            tuple(self._index[word] for word in words),
        )
        if self._held > _MEMO_CHARS:
            self._memo.clear()
            self._held = 0
        self._memo[text] = made
        self._held += len(text)
        return made


def _parts(content: Any) -> tuple[list[str], int]:
    """The texts of a message's content, and how many images it holds."""
    if isinstance(content, str):
        return [content], 0
    if not isinstance(content, list):
        return [], 0
    texts: list[str] = []
    images = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "image", "input_image"):
            images += 1
    return texts, images


def find_keywords(text: str, keywords: Sequence[str]) -> tuple[str, ...]:
    """The keywords that start a word of ``text`` (already lower-cased), in
    the order of ``keywords``.

    A substring search per keyword, then a look at the character before the
    hit: far cheaper than one regular expression over the text.
    """
    found: list[str] = []
    for word in keywords:
        at = text.find(word)
        while at >= 0:
            if at == 0 or not text[at - 1].isalnum():
                found.append(word)
                break
            at = text.find(word, at + 1)
    return tuple(found)
