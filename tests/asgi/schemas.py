"""Hypothesis strategies drawing JSON values from the JSON Schema subset the
``/openapi.json`` document uses (type, const, enum, properties, required,
additionalProperties, items, minItems, minLength, minimum, anyOf, oneOf), and
values that break a schema (arbitrary JSON that fails to validate)."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import strategies as st

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    least = schema.get("minLength", 0)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda t: len(t) >= least
        )
    return st.text(min_size=least, max_size=24)


_SCALARS: dict[str, Any] = {
    "string": _string,
    "boolean": lambda s: st.booleans(),
    "null": lambda s: st.none(),
    "integer": lambda s: st.integers(
        s.get("minimum", -(2**31)), s.get("maximum", 2**31)
    ),
    "number": lambda s: st.floats(
        min_value=s.get("minimum"),
        max_value=s.get("maximum"),
        allow_nan=False,
        allow_infinity=False,
    ),
}


def valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values ``schema`` accepts (its ``$ref``s already resolved)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [valid(s) for s in schema[key]]
            drawn = st.one_of(options)
            if key == "oneOf":  # exactly one must match
                return drawn.filter(lambda v, a=schema[key]: _matches(a, v) == 1)
            return drawn
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([valid({**schema, "type": k}) for k in kind])
    if kind == "object":
        return _object(schema)
    if kind == "array":
        items = valid(schema.get("items", {}))
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=3)
    if kind in _SCALARS:
        return _SCALARS[kind](schema)  # type: ignore[no-any-return]
    return JSON


def _matches(schemas: list[dict[str, Any]], value: Any) -> int:
    return sum(jsonschema.Draft202012Validator(s).is_valid(value) for s in schemas)


@st.composite
def _object(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    found: dict[str, Any] = {}
    for name, sub in properties.items():
        if name in required or draw(st.integers(0, 3)) == 0:
            found[name] = draw(valid(sub), label=name)
    more = schema.get("additionalProperties", True)
    if more is not False and draw(st.integers(0, 4)) == 0:
        fresh = st.text(min_size=1, max_size=8).filter(lambda n: n not in properties)
        found[draw(fresh)] = draw(JSON if more is True else valid(more))
    return found


def breaking(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values ``schema`` refuses."""
    check = jsonschema.Draft202012Validator(schema)
    return JSON.filter(lambda value: not check.is_valid(value))
