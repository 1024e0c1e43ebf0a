"""What every configuration model shares: a frozen, strict pydantic base whose
constructor raises `ConfigError` with the path of every bad field, and the
common field types and validators."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._exceptions import ConfigError

__all__ = [
    "ENV_NAME",
    "ConfigModel",
    "CrossFieldError",
    "InsecureConfigWarning",
    "PositiveSeconds",
    "ProviderId",
    "checked_zone",
    "normalize_id",
]

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,127}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What an environment variable's name looks like (a secret pasted in its
place does not)."""


class InsecureConfigWarning(UserWarning):
    """A configuration choice that keeps a secret somewhere it should not be."""


_NESTING: ContextVar[int] = ContextVar("palyra_config_nesting", default=0)


class ConfigModel(BaseModel):
    """Frozen, strict base whose constructor raises `ConfigError`."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, defer_build=True
    )

    def __init__(self, **data: Any) -> None:
        # pydantic calls a custom __init__ for nested models too: only the
        # outermost constructor turns errors into a ConfigError, so paths stay whole.
        depth = _NESTING.get()
        token = _NESTING.set(depth + 1)
        errors: list[tuple[str, str]] = []
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if depth:
                raise
            errors = _validation_errors(exc, type(self))
        except CrossFieldError as exc:
            errors = exc.errors
        finally:
            _NESTING.reset(token)
        if errors:
            # Raised outside the except block: pydantic's error quotes the input
            # (keys included), so it must not ride along as __context__.
            raise ConfigError(errors)


class CrossFieldError(Exception):
    """Raised by registry-level checks; not a ValueError so pydantic passes it on."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


_SEQUENCE_TYPES = frozenset({"tuple_type", "list_type"})


def _validation_errors(
    exc: ValidationError, root: type[BaseModel]
) -> list[tuple[str, str]]:
    """(path, message) per problem, unknown keys first: a misspelt table name
    explains the errors that follow from it."""
    unknown, other = [], []
    for err in exc.errors(include_url=False):
        path = _format_path(err["loc"])
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            unknown.append((path, "unknown key" + _suggestion(root, err["loc"])))
            continue
        if kind == "missing":
            msg = "required key is missing"
        elif kind in _SEQUENCE_TYPES:
            msg = "must be a list"
        elif msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
        other.append((path, msg))
    return unknown + other


def unknown_keys(
    model: type[BaseModel], keys: Iterable[Any], prefix: str = ""
) -> list[tuple[str, str]]:
    """An error per key ``model`` has no field for, with a suggestion."""
    known = _names(model)
    return [
        (f"{prefix}{key}", "unknown key" + _near(str(key), known))
        for key in keys
        if key not in known
    ]


def _suggestion(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None:
            return ""
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    return _near(str(loc[-1]), _names(model)) if model is not None else ""


def _names(model: type[BaseModel]) -> list[str]:
    names = list(model.model_fields)
    names += [f.alias for f in model.model_fields.values() if f.alias]
    return names


def _near(key: str, known: list[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model an annotation holds (itself, or inside a tuple,
    Optional or Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _format_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def normalize_id(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        if not _ID_PATTERN.match(value):
            raise ValueError(
                "must be 1-128 characters of a-z, 0-9, '_', '.', ':' or '-'"
                " starting with a letter or digit"
            )
    return value


ProviderId = Annotated[str, Field(min_length=1, max_length=128)]
PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


def checked_zone(value: str) -> str:
    """``value`` when it names an IANA time zone (a validator's body).

    Raises:
        ValueError: it names none.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (an IANA name, e.g. 'Europe/Prague')"
        ) from None
    return value
