"""What an estimate is (`TokenEstimate`) and what a counter must do
(`TokenCounter`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["TokenCounter", "TokenEstimate"]


class TokenEstimate(BaseModel):
    """The token estimate made before dispatch.

    Attributes:
        prompt_tokens: Estimated prompt tokens, including the chat-format overhead.
        approximate: True unless the model's own encoding was used, every input
            could be measured (e.g. image sizes were known) and every text was
            tokenized: past a budget of characters per call, text is estimated
            from samples of it instead.
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
