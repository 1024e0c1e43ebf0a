"""Hypothesis strategies for the call arguments of `palyra.Palyra`: plausible
shapes (messages, tools, options) whose every leaf may turn into anything a
caller could pass by mistake (None, nan, huge ints, bytes, sets, objects,
strings with control, non-ASCII or lone surrogate characters)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from hypothesis import strategies as st

from palyra._request import ROLES, ChatOptions

KNOWN_NAMES = frozenset(ChatOptions.__annotations__) | {
    "agent",
    "session",
    "principal",
    "tags",
    "model",
    "messages",
    "exact",
    "dimensions",
    "inputs",
    "file",
    "response_format",
    "language",
    "prompt",
    "temperature",
}


class Opaque:
    """An object no serializer knows."""

    def __repr__(self) -> str:
        return "Opaque()"


class Dumps:
    """Looks like a pydantic model to a duck-typing check, and is not one."""

    model_dump = 5


# -- leaves --------------------------------------------------------------------------

NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\r\n",
        "a\nb",
        "caf\u00e9",
        "\ud800",
        "x\udfffy",
        "\u2028",
        "\U0001f4a5",
        "\ufeff",
        "{",
        "null",
        "NaN",
        "a" * 5000,
        "sk-propertytest-0123456789abcdef"[::-1],
    ]
)
TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(categories=["Cc", "Cs", "Zl", "Zs", "So"]), max_size=6),
    NASTY_TEXT,
)
SHORT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=10
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]),
)
INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**63, 10**40]),
    # Too long for str(): built after hypothesis has described the strategy.
    st.sampled_from([1, -1]).map(lambda sign: sign * 10**5000),
)
ODD = st.one_of(
    st.binary(max_size=6),
    st.builds(bytearray, st.binary(max_size=4)),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.builds(Decimal, st.sampled_from(["1.5", "NaN", "Infinity", "1e400"])),
    st.builds(Fraction, st.integers(-5, 5), st.integers(1, 5)),
    st.just(Opaque()),
    st.just(Dumps()),
    st.just(object),
    st.just(Ellipsis),
    st.builds(io.BytesIO, st.binary(max_size=3)),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT, ODD)
HASHABLE = st.one_of(
    st.none(), st.booleans(), INTS, FLOATS, TEXT, st.binary(max_size=4)
)
KEYS = st.one_of(
    TEXT, TEXT, TEXT, INTS, st.none(), st.tuples(SHORT), st.binary(max_size=3)
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(KEYS, children, max_size=3),
        st.tuples(children, children),
        st.frozensets(HASHABLE, max_size=3),
        st.sets(HASHABLE, max_size=3),
        st.dictionaries(TEXT, children, max_size=2).map(MappingProxyType),
    )


ANYTHING: st.SearchStrategy[Any] = st.recursive(SCALARS, _containers, max_leaves=8)


def maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the plausible value (five times in six), sometimes anything."""
    return st.one_of(*[plausible] * 5, ANYTHING)


def maybe_key(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A mapping key: mostly the plausible one, sometimes any hashable value."""
    return st.one_of(plausible, plausible, plausible, KEYS)


# -- messages ------------------------------------------------------------------------

PART_TYPES = st.sampled_from(
    ["text", "image_url", "input_audio", "file", "refusal", "bogus"]
)
IMAGE_URLS = st.one_of(
    st.sampled_from(
        [
            "https://example.com/cat.png",
            "data:image/png;base64,iVBORw0KGgo=",
            "data:image/jpg;base64,AAAA",
            "data:image/tiff;base64,AAAA",
            "data:,",
            "data:image/png,notbase64",
            "",
        ]
    ),
    TEXT,
)
PART = st.one_of(
    st.fixed_dictionaries(
        {"type": maybe(PART_TYPES)},
        optional={
            "text": maybe(TEXT),
            "refusal": maybe(TEXT),
            "image_url": maybe(
                st.one_of(
                    IMAGE_URLS,
                    st.fixed_dictionaries(
                        {"url": maybe(IMAGE_URLS)}, optional={"detail": maybe(TEXT)}
                    ),
                )
            ),
            "input_audio": maybe(
                st.fixed_dictionaries(
                    {"data": maybe(TEXT), "format": maybe(st.just("wav"))}
                )
            ),
            "file": ANYTHING,
            "cache_control": maybe(st.just({"type": "ephemeral"})),
        },
    ),
    ANYTHING,
)
CONTENT = st.one_of(TEXT, TEXT, st.none(), st.lists(PART, max_size=3), ANYTHING)
ARGUMENTS = maybe(
    st.one_of(st.sampled_from(['{"city": "Paris"}', "{}", "", "not json", "[1]"]), TEXT)
)
TOOL_CALL = maybe(
    st.fixed_dictionaries(
        {
            "id": maybe(st.sampled_from(["call_1", "toolu_1", "a b!"])),
            "type": maybe(st.just("function")),
            "function": maybe(
                st.fixed_dictionaries(
                    {"name": maybe(st.just("get_weather")), "arguments": ARGUMENTS}
                )
            ),
        }
    )
)
ROLE = maybe(st.sampled_from(sorted(ROLES)))
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": ROLE, "content": CONTENT},
        optional={
            "tool_call_id": maybe(st.sampled_from(["call_1", "toolu_1", ""])),
            "tool_calls": maybe(st.lists(TOOL_CALL, max_size=2)),
            "name": maybe(SHORT),
            "is_error": maybe(st.booleans()),
            "thinking_blocks": maybe(st.lists(ANYTHING, max_size=2)),
        },
    ),
    st.fixed_dictionaries({"role": ROLE, "content": CONTENT}).map(MappingProxyType),
    ANYTHING,
)
GOOD_START = [{"role": "user", "content": "hello"}]
CALL_ID = maybe(st.sampled_from(["call_1", "toolu_1", "a b!"]))
TOOL_ROUND = st.tuples(
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.one_of(st.none(), TEXT),
            "tool_calls": maybe(st.lists(TOOL_CALL, min_size=1, max_size=2)),
        },
        optional={"thinking_blocks": maybe(st.lists(ANYTHING, max_size=2))},
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": CALL_ID, "content": CONTENT}
    ),
).map(lambda pair: [*GOOD_START, *pair])
VALID_MESSAGES = st.sampled_from(
    [
        GOOD_START,
        [{"role": "system", "content": "be brief"}, *GOOD_START],
        [
            *GOOD_START,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            }
        ],
    ]
)
MESSAGES = st.one_of(
    st.lists(MESSAGE, max_size=4),
    st.lists(MESSAGE, max_size=3).map(lambda tail: GOOD_START + tail),
    st.lists(MESSAGE, max_size=3).map(tuple),
    TOOL_ROUND,
    ANYTHING,
)

# -- options -------------------------------------------------------------------------

SCHEMA = maybe(
    st.fixed_dictionaries(
        {"type": maybe(st.just("object"))},
        optional={"properties": maybe(st.dictionaries(TEXT, ANYTHING, max_size=2))},
    )
)
TOOL = maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "type": maybe(st.sampled_from(["function", "web_search", "custom"])),
            "function": maybe(
                st.fixed_dictionaries(
                    {"name": maybe(st.sampled_from(["get_weather", "x", ""]))},
                    optional={"parameters": SCHEMA, "description": maybe(TEXT)},
                )
            ),
            "name": maybe(SHORT),
        },
    )
)
TOOL_CHOICE = maybe(
    st.one_of(
        st.sampled_from(["auto", "required", "none", "any"]),
        st.fixed_dictionaries(
            {
                "type": maybe(st.just("function")),
                "function": maybe(
                    st.fixed_dictionaries({"name": maybe(st.just("get_weather"))})
                ),
            }
        ),
    )
)
RESPONSE_FORMAT = maybe(
    st.fixed_dictionaries(
        {"type": maybe(st.sampled_from(["text", "json_object", "json_schema"]))},
        optional={
            "json_schema": maybe(
                st.fixed_dictionaries({"name": maybe(SHORT), "schema": SCHEMA})
            )
        },
    )
)
NUMBER = maybe(st.one_of(FLOATS, st.floats(0, 2), INTS))
COUNT = maybe(st.one_of(st.integers(-2, 5000), INTS))
STRINGS = st.lists(TEXT, max_size=3)
THINKING = maybe(
    st.fixed_dictionaries(
        {
            "type": maybe(st.sampled_from(["enabled", "disabled"])),
            "budget_tokens": maybe(st.one_of(st.integers(-5, 50000), INTS)),
        }
    )
)
EXTRA_BODY = maybe(
    st.dictionaries(
        maybe_key(st.sampled_from(["top_k", "thinking", "x_custom", "model", "seed"])),
        st.one_of(THINKING, ANYTHING),
        max_size=2,
    )
)
HEADER_NAMES = st.sampled_from(
    ["x-trace", "X-Custom", "bad name", "content-length", "x-api-key", "", "x\u00e9"]
)
EXTRA_HEADERS = maybe(st.dictionaries(maybe_key(HEADER_NAMES), maybe(TEXT), max_size=2))
SECONDS = maybe(st.one_of(st.floats(0.001, 30), FLOATS, INTS))

OPTION_STRATEGIES: Mapping[str, st.SearchStrategy[Any]] = {
    "tools": maybe(st.lists(TOOL, max_size=2)),
    "tool_choice": TOOL_CHOICE,
    "parallel_tool_calls": maybe(st.booleans()),
    "response_format": RESPONSE_FORMAT,
    "temperature": NUMBER,
    "top_p": NUMBER,
    "max_tokens": COUNT,
    "max_completion_tokens": COUNT,
    "stop": maybe(st.one_of(TEXT, STRINGS)),
    "seed": COUNT,
    "n": COUNT,
    "presence_penalty": NUMBER,
    "frequency_penalty": NUMBER,
    "logit_bias": maybe(st.dictionaries(TEXT, INTS, max_size=2)),
    "logprobs": maybe(st.booleans()),
    "top_logprobs": COUNT,
    "user": maybe(TEXT),
    "metadata": maybe(
        st.dictionaries(maybe_key(st.sampled_from(["user_id", "k"])), maybe(TEXT))
    ),
    "store": maybe(st.booleans()),
    "reasoning_effort": maybe(st.sampled_from(["low", "medium", "high"])),
    "service_tier": maybe(SHORT),
    "modalities": maybe(STRINGS),
    "audio": maybe(st.dictionaries(TEXT, TEXT, max_size=2)),
    "prediction": maybe(st.dictionaries(TEXT, ANYTHING, max_size=2)),
    "prompt_cache_key": maybe(SHORT),
    "safety_identifier": maybe(TEXT),
    "verbosity": maybe(SHORT),
    "stream_options": maybe(
        st.fixed_dictionaries({}, optional={"include_usage": maybe(st.booleans())})
    ),
    "extra_body": EXTRA_BODY,
    "extra_headers": EXTRA_HEADERS,
    "timeout": SECONDS,
    "deadline": SECONDS,
}
REQUEST_OPTIONS = ("extra_body", "extra_headers", "timeout", "deadline")
UNKNOWN_NAMES = st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(
    lambda name: name not in KNOWN_NAMES and name != "stream"
) | st.just("stream")
CALLER = st.fixed_dictionaries(
    {},
    optional={
        "agent": maybe(st.sampled_from(["bot", "agent.one", "bad agent"])),
        "session": maybe(st.sampled_from(["s-1", "with space"])),
        "principal": maybe(st.sampled_from(["user@example.com", "u/1+2="])),
        "tags": maybe(st.dictionaries(maybe_key(SHORT), maybe(TEXT), max_size=3)),
    },
)


@st.composite
def options(
    draw: st.DrawFn, names: tuple[str, ...], min_size: int = 0
) -> dict[str, Any]:
    """A few of the named options, each maybe anything; sometimes an unknown one."""
    chosen = draw(
        st.lists(st.sampled_from(names), min_size=min_size, max_size=4, unique=True)
    )
    result = {name: draw(OPTION_STRATEGIES[name]) for name in chosen}
    if draw(st.integers(0, 15)) == 0:
        result[draw(UNKNOWN_NAMES)] = draw(ANYTHING)
    return result
