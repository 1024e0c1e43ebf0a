"""Value checks for caller input: chat options, tools, headers, nesting depth.

Each check takes the option's name and its value and raises
`InvalidRequestError` naming the option when the value is not what an
upstream could take, so bad input never reaches a serializer, an adapter or
a socket as a bare ``TypeError`` or ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._exceptions import InvalidRequestError
from ._utils import header_problem

__all__ = ["MAX_DEPTH", "check_depth", "check_headers", "check_option", "seconds"]

MAX_DEPTH = 64
"""How deeply message content, tools and extra fields may nest."""


def _fail(name: str, what: str, value: Any) -> InvalidRequestError:
    return InvalidRequestError(f"{name}: must be {what}, got {_shown(value)}")


def _shown(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
        return text if len(text) <= 40 else text[:39] + "…"
    return type(value).__name__


def _number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(name, "a number", value)
    if not math.isfinite(value):
        raise _fail(name, "a finite number", value)


def _integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, "an integer", value)


def _positive_integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(name, "a positive integer", value)


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)


def _string(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail(name, "a string", value)


def _mapping(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _fail(name, "a mapping", value)


def _string_map(name: str, value: Any) -> None:
    _mapping(name, value)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidRequestError(f"{name}: must map strings to strings")


def _stop(name: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) for item in value
    ):
        raise _fail(name, "a string or a list of strings", value)


def _strings(name: str, value: Any) -> None:
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) for item in value
    ):
        raise _fail(name, "a list of strings", value)


def _tool_choice(name: str, value: Any) -> None:
    if not isinstance(value, str | Mapping):
        raise _fail(name, "'auto', 'required', 'none' or a mapping", value)


def _tools(name: str, value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise _fail(name, "a list of tool definitions", value)
    for index, tool in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(tool, Mapping):
            raise _fail(where, "a mapping", tool)
        function = tool.get("function")
        if function is None and tool.get("type", "function") == "function":
            raise InvalidRequestError(
                f"{where}.function: required, e.g. {{'type': 'function', 'function':"
                " {'name': 'get_weather', 'parameters': {...}}}"
            )
        if function is None:
            continue  # another tool type (custom, web search): the upstream's call
        if not isinstance(function, Mapping):
            raise _fail(f"{where}.function", "a mapping", function)
        fname = function.get("name")
        if not isinstance(fname, str) or not fname:
            raise _fail(f"{where}.function.name", "a non-empty string", fname)
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise _fail(f"{where}.function.parameters", "a JSON schema", parameters)


Check = Callable[[str, Any], None]
_CHECKS: dict[str, Check] = {
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "response_format": _mapping,
    "temperature": _number,
    "top_p": _number,
    "max_tokens": _positive_integer,
    "max_completion_tokens": _positive_integer,
    "stop": _stop,
    "seed": _integer,
    "n": _positive_integer,
    "presence_penalty": _number,
    "frequency_penalty": _number,
    "logit_bias": _mapping,
    "logprobs": _boolean,
    "top_logprobs": _integer,
    "user": _string,
    "metadata": _string_map,
    "store": _boolean,
    "reasoning_effort": _string,
    "service_tier": _string,
    "modalities": _strings,
    "audio": _mapping,
    "prediction": _mapping,
    "prompt_cache_key": _string,
    "safety_identifier": _string,
    "verbosity": _string,
    "stream_options": _mapping,
    "extra_body": _mapping,
}


def check_option(name: str, value: Any) -> None:
    """Check one chat option (None means unset and passes).

    Raises:
        InvalidRequestError: naming the option.
    """
    if value is None:
        return
    check = _CHECKS.get(name)
    if check is not None:
        check(name, value)


def check_headers(name: str, headers: Any) -> Mapping[str, str]:
    """Check caller headers: a mapping of valid names to single-line ASCII.

    Raises:
        InvalidRequestError: naming the header and what is wrong with it.
    """
    if not isinstance(headers, Mapping):
        raise _fail(name, "a mapping of header names to values", headers)
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequestError(f"{name}: header names and values are strings")
        problem = header_problem(key, value)
        if problem:
            raise InvalidRequestError(f"{name}: header {key!r} {problem}")
    return headers


def check_depth(name: str, value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse data nested deeper than ``limit`` (no recursion: no
    RecursionError, whatever the input).

    Raises:
        InvalidRequestError: naming where the data starts.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            raise InvalidRequestError(f"{name}: nested more than {limit} levels deep")
        if isinstance(item, Mapping):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)


def seconds(name: str, value: Any) -> float | None:
    """A positive, finite number of seconds, or None.

    Raises:
        InvalidRequestError: naming the option.
    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _fail(name, "a positive number of seconds", value)
    return float(value)
