"""The three-model registry the routing tests share, and its prompts.

``small`` is cheap with a small context, ``mid`` sits in the middle, and
``large`` is strong, dear and the only one that takes images. Each model has
its own deterministic provider, so one model's upstream can be scripted to
fail (and its breaker to open) without touching the others.
"""

from __future__ import annotations

from typing import Any

PROMPT_WORDS = [
    "the",
    "committee",
    "reviews",
    "the",
    "quarterly",
    "report",
    "on",
    "customer",
    "retention",
    "shipping",
    "delays",
    "and",
    "the",
    "new",
    "pricing",
    "model",
    "for",
    "enterprise",
    "accounts",
    "before",
    "the",
    "board",
    "meets",
    "next",
    "week",
]


def words(n: int, seed: int = 0) -> str:
    """``n`` plain English-ish words, different for each seed."""
    return " ".join(PROMPT_WORDS[(i * 7 + seed) % len(PROMPT_WORDS)] for i in range(n))


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


IMAGE = {
    "type": "image_url",
    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
}

SHORT = user("What is the capital of France?")
REASONING = user(
    "Analyze the trade-offs of these two designs step by step and prove which"
    " scales better. " + words(1600)
)
CODE = user(
    "Refactor this module, optimize it and debug the failing case:\n"
    "```python\ndef f(x):\n    return x + 1\n```\n"
    "and the caller:\n```python\nprint(f(1))\n```\n" + words(400)
)
MEDIUM = user(
    "Compare these two options, evaluate the costs and analyse the risks. " + words(300)
)
VISION = [
    {"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}
]
# Plain words only, past small's context window: the score still asks for small.
LONG_PLAIN = user(words(1200))

# (name, messages, the tier the score asks for, the model routing chooses)
TABLE = [
    ("short", SHORT, "small", "small"),
    ("reasoning", REASONING, "large", "large"),
    ("code", CODE, "large", "large"),
    ("medium", MEDIUM, "medium", "mid"),
    ("vision", VISION, "small", "large"),
]


def provider(pid: str) -> dict[str, Any]:
    return {
        "id": pid,
        "kind": "deterministic",
        "max_retries": 0,
        "circuit_breaker_threshold": 2,
        "circuit_breaker_cooldown": 60,
    }


def registry(**routing: Any) -> dict[str, Any]:
    """The config: three providers, three models, ``mid`` the default."""
    return {
        "providers": [provider("p-small"), provider("p-mid"), provider("p-large")],
        "models": [
            {
                "id": "small",
                "provider": "p-small",
                "tier": "small",
                "context_window": 1024,
                "max_output_tokens": 512,
                "pricing": {"input": "0.15", "output": "0.60"},
            },
            {
                "id": "mid",
                "provider": "p-mid",
                "tier": "medium",
                "context_window": 32000,
                "max_output_tokens": 4096,
                "pricing": {"input": "1", "output": "4"},
            },
            {
                "id": "large",
                "provider": "p-large",
                "tier": "large",
                "context_window": 200000,
                "max_output_tokens": 8192,
                "capabilities": {"vision": True},
                "pricing": {"input": "5", "output": "25"},
            },
        ],
        "defaults": {"chat": "mid"},
        "resilience": {"failover": "off"},
        "routing": routing,
    }
