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

from ._config import ROUTING_MODES, RoutingMode, parse_mode
from ._exceptions import InvalidRequestError
from ._utils import header_problem, shown

__all__ = [
    "MAX_DEPTH",
    "check_depth",
    "check_form_field",
    "check_headers",
    "check_option",
    "check_routing",
    "check_text",
    "check_tool_calls",
    "seconds",
]

MAX_DEPTH = 64
"""How deeply message content, tools and extra fields may nest."""

_INT64 = 2**63  # upstreams take 64-bit integers; JSON and str() stop earlier


def _fail(name: str, what: str, value: Any) -> InvalidRequestError:
    return InvalidRequestError(f"{name}: must be {what}, got {shown(value)}")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def _number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(name, "a number", value)
    if not _finite(value):
        raise _fail(name, "a finite number", value)


def _integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, "an integer", value)
    if not -_INT64 <= value < _INT64:
        raise _fail(name, "an integer that fits in 64 bits", value)


def _positive_integer(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(name, "a positive integer", value)
    if value >= _INT64:
        raise _fail(name, "a positive integer that fits in 64 bits", value)


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
    function = value.get("function") if isinstance(value, Mapping) else None
    if function is not None and not isinstance(function, Mapping):
        raise _fail(f"{name}.function", "a mapping with the tool's name", function)


def _response_format(name: str, value: Any) -> None:
    _mapping(name, value)
    spec = value.get("json_schema")
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise _fail(f"{name}.json_schema", "a mapping", spec)
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, Mapping):
        raise _fail(f"{name}.json_schema.schema", "a JSON schema", schema)


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


def check_tool_calls(name: str, value: Any) -> None:
    """An assistant message's ``tool_calls``: a list of ``{"id", "type",
    "function": {"name", "arguments"}}`` with a named function whose arguments
    are JSON text (or a mapping).

    Raises:
        InvalidRequestError: naming the call and the field.
    """
    if not isinstance(value, list | tuple):
        raise _fail(name, "a list of tool calls", value)
    for index, call in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(call, Mapping):
            raise _fail(where, "a mapping", call)
        function = call.get("function")
        if not isinstance(function, Mapping):
            raise _fail(f"{where}.function", "a mapping", function)
        fname = function.get("name")
        if not isinstance(fname, str) or not fname:
            raise _fail(f"{where}.function.name", "a non-empty string", fname)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str | Mapping):
            raise _fail(f"{where}.function.arguments", "JSON text", arguments)


Check = Callable[[str, Any], None]
_CHECKS: dict[str, Check] = {
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "response_format": _response_format,
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
    # Level by level, so each level's children are gathered by one C-level
    # extend: this runs over every message of every call.
    level: list[Any] = [value]
    depth = 0
    while level:
        if depth > limit:
            raise InvalidRequestError(f"{name}: nested more than {limit} levels deep")
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind in _LEAVES:
                continue
            # Exact types before ABCs: an ABC isinstance costs several times more.
            if kind is dict:
                below.extend(item.values())
            elif kind is list or kind is tuple:
                below.extend(item)
            elif isinstance(item, Mapping):
                below.extend(item.values())
            elif isinstance(item, list | tuple):
                below.extend(item)
        level = below
        depth += 1


# What cannot nest: skipped without being queued.
_LEAVES = frozenset({str, int, float, bool, type(None)})


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
        or not _finite(value)
        or value <= 0
    ):
        raise _fail(name, "a positive number of seconds", value)
    return float(value)


def check_text(name: str, value: Any) -> None:
    """A string that can be sent: UTF-8 encodable (no lone surrogates).

    Raises:
        InvalidRequestError: naming the argument.
    """
    _string(name, value)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidRequestError(
            f"{name}: must be valid Unicode text (it holds a lone surrogate)"
        ) from None


def check_form_field(name: str, value: Any) -> None:
    """A multipart form field: text, a finite number, true or false, or a list
    of those (sent as repeated ``name[]`` parts).

    Raises:
        InvalidRequestError: naming the field.
    """
    for item in value if isinstance(value, list | tuple) else (value,):
        if isinstance(item, str):
            check_text(name, item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            _integer(name, item)
        elif isinstance(item, float):
            _number(name, item)
        else:
            raise _fail(name, "text, a number or a list of them", item)


def check_routing(route: Any, hint: Any) -> tuple[RoutingMode | None, str | None]:
    """A call's ``route=`` (a routing mode; ``dry-run`` accepted) and
    ``hint=`` (a task hint name; whether it is known is the router's check)."""
    mode = parse_mode(route)
    if mode is not None and mode not in ROUTING_MODES:
        raise InvalidRequestError(
            f"route: must be one of {', '.join(ROUTING_MODES)}, got {shown(route)}"
        )
    if hint is not None and (not isinstance(hint, str) or not hint.strip()):
        raise _fail("hint", "a task hint name such as 'classification'", hint)
    return mode, hint.strip().lower() if hint is not None else None
