"""Usage for answers whose upstream reported none.

Some OpenAI-compatible servers ignore ``stream_options.include_usage`` (or
send no ``usage`` at all). Rather than leave ``usage`` empty, palyra counts
it: the prompt from the estimate it made before the call, the completion from
the answer's text with the model's tokenizer. The call's ``palyra`` field
says so (``usage_estimated``).
"""

from __future__ import annotations

from .._tokens import TokenCounter, TokenEstimate
from .._wire import ChatCompletion, CompletionUsage

__all__ = ["estimated_usage"]


def estimated_usage(
    counter: TokenCounter,
    model: str,
    estimate: TokenEstimate | None,
    completion: ChatCompletion,
) -> CompletionUsage:
    """The usage ``completion`` most likely cost, counted locally."""
    texts = []
    for choice in completion.choices:
        message = choice.message
        texts += [t for t in (message.content, message.refusal) if t]
        for call in message.tool_calls or ():
            texts += [call.function.name, call.function.arguments]
    counts, _ = counter.count_texts(model, texts) if texts else ([], False)
    prompt = estimate.prompt_tokens if estimate is not None else 0
    output = sum(counts)
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output
    )
