"""A bound on what one count costs: exact up to a budget, sampled beyond.

tiktoken encodes a few million characters a second, slower still on long
runs without spaces (8 MB of one letter took 11 s), and the estimate runs
before every call, on the event loop for ``achat`` and ``astream``. So each
call gets a budget of characters to tokenize exactly; text past it is
estimated from evenly spaced windows, and the estimate says it is
approximate. What one call tokenizes is bounded whatever the input's size:
what grows with the input is walking the messages and taking ``len()``.
"""

from __future__ import annotations

import bisect
import itertools

from .encodings import Counting

__all__ = ["EXACT_CHARS", "SAMPLE_WINDOWS", "WINDOW_CHARS", "Tally"]

# Characters of new text (not in the memo) one call tokenizes exactly.
# tiktoken does 16,384 characters in 2-3 ms (CJK text, about 4 ms) on the
# 2-CPU machine of docs/performance.md: the most one estimate may hold an
# event loop, while prompts of up to about 4,000 tokens stay exact.
EXACT_CHARS = 16_384
# Past the budget, the remaining text is sampled in this many windows, evenly
# spaced over it: 64 windows of 192 characters (12,288 in all, about 2 ms).
# Over 240 samples of the project's docs and source (100 KB to 1 MB, the
# text rotated so the windows fall elsewhere), the estimate was off by 1.3 to
# 1.5 % on average and 4.8 % at worst; 48 windows did 1.5 to 1.9 % and 6 %
# (once 9 %), 96 windows 1.1 to 1.2 % and 4.6 % for half as much again:
# past 64, more windows buy little. 192 characters are long enough that a
# window's cut edges matter little, short enough that no window is slow to
# encode, even a run without spaces. bench/tokens.py measures both.
SAMPLE_WINDOWS = 64
WINDOW_CHARS = 192
# How far a window's edge may move to reach a space, so that it starts and
# ends where a token of the surrounding text would (" word" is one token).
_ALIGN_CHARS = 24


class Tally:
    """One call's counting: exact while the budget lasts, then deferred.

    Texts already in the encoding's memo are exact and free. Any other text
    is tokenized if it fits in what is left of `EXACT_CHARS`; one that does
    not is deferred, and `guesses` prices all deferred texts at once from
    `SAMPLE_WINDOWS` windows spread over them.
    """

    __slots__ = ("_count", "_deferred", "_left")

    def __init__(self, count: Counting) -> None:
        self._count = count
        self._left = EXACT_CHARS
        self._deferred: list[str] = []

    @property
    def sampled(self) -> bool:
        """Whether some text was deferred (so the counts are approximate)."""
        return bool(self._deferred)

    def exact(self, text: str) -> int | None:
        """The exact count of ``text``, or None if it was deferred."""
        size = len(text)
        if size <= EXACT_CHARS:  # longer texts are never in the memo
            known = self._count.known(text)
            if known is not None:
                return known
            if size <= self._left:
                self._left -= size
                return self._count(text)
        self._deferred.append(text)
        return None

    def __call__(self, text: str) -> int:
        """The exact count, or 0 for a deferred text (see `rest`)."""
        n = self.exact(text)
        return n or 0

    def guesses(self) -> list[int]:
        """Estimated counts of the deferred texts, in the order deferred."""
        texts = self._deferred
        if not texts:
            return []
        rate = _tokens_per_char(texts, self._count)
        return [max(1, round(rate * len(text))) for text in texts]

    def rest(self) -> int:
        """Estimated tokens of all deferred texts."""
        return sum(self.guesses())


def _tokens_per_char(texts: list[str], count: Counting) -> float:
    """Tokens per character of ``texts``, from windows evenly spaced over them
    as if they were one text (a window never spans two texts)."""
    ends = list(itertools.accumulate(map(len, texts)))
    total = ends[-1]
    tokens = chars = 0
    for i in range(SAMPLE_WINDOWS):
        centre = (2 * i + 1) * total // (2 * SAMPLE_WINDOWS)
        k = bisect.bisect_right(ends, centre)
        text = texts[k]
        window = _window(text, centre - (ends[k] - len(text)))
        tokens += count.uncached(window)
        chars += len(window)
    return tokens / chars


def _window(text: str, centre: int) -> str:
    """About `WINDOW_CHARS` of ``text`` around ``centre``, edges on spaces."""
    start = max(0, min(centre - WINDOW_CHARS // 2, len(text) - WINDOW_CHARS))
    end = min(len(text), start + WINDOW_CHARS)
    if start:
        found = text.find(" ", start, start + _ALIGN_CHARS)
        start = found if found >= 0 else start
    if end < len(text):
        found = text.find(" ", end, end + _ALIGN_CHARS)
        end = found if found >= 0 else end
    return text[start:end]
