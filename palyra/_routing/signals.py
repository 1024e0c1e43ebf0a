"""What a chat request is measured by: the score's signals, read off it.

`measure` walks the messages once: it counts messages, image parts and
fenced code blocks, and finds the reasoning and analysis keywords in the
text of system, developer and user messages (what the caller asks, not what
a model answered). The prompt's tokens come from the tokenizer, counted by
the caller of `measure`. Text past `SCAN_CHARS` is not scanned, so one
request costs a bounded time whatever its size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SCAN_CHARS", "Signals", "find_keywords", "measure"]

SCAN_CHARS = 65_536
"""Characters of message text scanned for keywords and code fences."""

_ASKING = frozenset({"system", "developer", "user"})
_FENCES = ("```", "~~~")


@dataclass(frozen=True, slots=True)
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


def measure(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Any] | None,
    *,
    json_mode: bool,
    prompt_tokens: int,
    output_tokens: int,
    keywords: Sequence[str],
) -> Signals:
    """The signals of a checked chat request."""
    asking: list[str] = []
    fences = images = 0
    left = SCAN_CHARS
    for message in messages:
        content = message.get("content")
        texts, found = _parts(content)
        images += found
        if left <= 0:
            continue
        for text in texts:
            text = text[:left]
            left -= len(text)
            fences += sum(text.count(fence) for fence in _FENCES)
            if message.get("role") in _ASKING:
                asking.append(text)
    return Signals(
        prompt_tokens=prompt_tokens,
        messages=len(messages),
        images=images,
        tools=len(tools) if tools else 0,
        json_mode=json_mode,
        code_blocks=fences // 2,
        keywords=find_keywords("\n".join(asking).lower(), keywords),
        output_tokens=output_tokens,
    )


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
