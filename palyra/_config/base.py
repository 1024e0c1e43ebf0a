"""What every configuration model shares: a frozen, strict pydantic base whose
constructor raises `ConfigError` with the path of every bad field, and the
common field types and validators."""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._exceptions import ConfigError

__all__ = [
    "ConfigModel",
    "CrossFieldError",
    "InsecureConfigWarning",
    "PositiveSeconds",
    "ProviderId",
    "normalize_id",
]

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,127}$")


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
            errors = _validation_errors(exc)
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


def _validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for err in exc.errors(include_url=False):
        path = _format_path(err["loc"])
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        elif msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
        errors.append((path, msg))
    return errors


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
