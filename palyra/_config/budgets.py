"""One ``[[budgets]]`` entry: `BudgetConfig`, and the window syntax it accepts.

A budget caps what calls may spend (USD or tokens) over a window, for every
call (``global``) or per agent, session, principal or tag value. Checks that
need two fields are field validators that read the fields declared before
them, so that each error names the field at fault (``budgets[0].soft_limit``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import ConfigModel, checked_zone, normalize_id
from .models import Pricing

__all__ = [
    "CALENDAR_WINDOWS",
    "SCOPES",
    "BudgetConfig",
    "parse_window",
]

SCOPES = ("global", "agent", "session", "principal")
"""Scopes other than ``tag:<key>``."""
CALENDAR_WINDOWS = ("day", "week", "month")
_TAG_KEY = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_ROLLING = re.compile(r"^([0-9]{1,9})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MAX_ROLLING = 366 * 86_400
_DEFAULT_ALERTS = (Decimal("0.5"), Decimal("0.8"), Decimal("1"))


def parse_window(text: str) -> tuple[str, int | None]:
    """``(kind, seconds)`` of a window: ``lifetime``, a calendar window
    (``day``, ``week``, ``month``) with no seconds, or ``rolling`` with its
    length (``"24h"`` is ``("rolling", 86400)``).

    Raises:
        ValueError: Not one of those, or a rolling length of 0 or past 366 d.
    """
    if text == "lifetime" or text in CALENDAR_WINDOWS:
        return text, None
    match = _ROLLING.match(text)
    if not match:
        raise ValueError(
            "must be lifetime, day, week, month or a rolling duration such as"
            f" '24h', '7d' or '90m' (<n>s|m|h|d|w), not {text!r}"
        )
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if not 0 < seconds <= _MAX_ROLLING:
        raise ValueError(f"a rolling window is more than 0 and at most 366d: {text!r}")
    return "rolling", seconds


def _decimal(value: Any) -> Any:
    # TOML floats are welcome, but through their repr: Decimal(0.1) would
    # carry the float's binary error into every comparison.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"must be a number, not {value!r}") from None
    return value


_Limit = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class BudgetConfig(ConfigModel):
    """One budget policy (a ``[[budgets]]`` table).

    Args:
        id: Unique budget id (the provider id rule: a-z, 0-9, ``_.:-``).
        metric: ``usd`` (the calls' cost) or ``tokens`` (prompt plus output).
        scope: ``global``, ``agent``, ``session``, ``principal`` or
            ``tag:<key>``.
        value: The one agent (session, ...) the budget applies to; omitted,
            every value has a limit of its own. Not allowed for ``global``.
        window: ``lifetime``, ``day``, ``week`` (from Monday), ``month`` or a
            rolling duration such as ``"24h"``, ``"7d"``, ``"90m"``.
        tz: IANA time zone the calendar windows start in (local midnight).
        hard_limit: A call whose worst case would pass it is refused before
            it is sent (`BudgetExceededError`).
        soft_limit: Alerts only; at most ``hard_limit``.
        alert_at: Fractions of the soft limit (of the hard limit without
            one) at which an alert fires, once per window.
        unpriced: What a call to a model without a price does to a ``usd``
            budget: ``block`` it, ``allow`` it at no cost, or ``estimate`` its
            cost with ``estimate_price``. Default: ``block`` for a usd budget
            with a hard limit, else ``allow``.
        estimate_price: USD per 1M tokens (``input``, ``output``) used with
            ``unpriced = "estimate"``.
        on_ledger_error: What a call does when the usage ledger cannot be
            read or written: ``block`` or ``allow``. Default: ``block`` for a
            usd budget with a hard limit, else ``allow``.
    """

    # Order matters: a field validator sees only the fields declared above it.
    id: Annotated[str, Field(min_length=1, max_length=128)]
    metric: Literal["usd", "tokens"] = "usd"
    scope: str = "global"
    value: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    window: str = "lifetime"
    tz: str = "UTC"
    hard_limit: _Limit | None = None
    soft_limit: _Limit | None = None
    alert_at: tuple[Annotated[Decimal, Field(allow_inf_nan=False)], ...] = (
        _DEFAULT_ALERTS
    )
    unpriced: Literal["block", "allow", "estimate"] | None = None
    estimate_price: Pricing | None = Field(default=None, validate_default=True)
    on_ledger_error: Literal["block", "allow"] | None = None

    _normalize_id = field_validator("id", mode="before")(staticmethod(normalize_id))
    _numbers = field_validator("hard_limit", "soft_limit", mode="before")(
        staticmethod(_decimal)
    )

    @field_validator("scope")
    @staticmethod
    def _check_scope(value: str) -> str:
        if value in SCOPES:
            return value
        if value.startswith("tag:") and _TAG_KEY.match(value[4:]):
            return value
        raise ValueError(
            "must be global, agent, session, principal or tag:<key> (a key of"
            f" a-z, 0-9, '_', '.', ':' or '-', at most 64), not {value!r}"
        )

    @field_validator("value")
    @staticmethod
    def _check_value(value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("scope") == "global":
            raise ValueError("a global budget has no value (it applies to every call)")
        return value

    @field_validator("window")
    @staticmethod
    def _check_window(value: str) -> str:
        parse_window(value)
        return value

    @field_validator("tz")
    @staticmethod
    def _check_tz(value: str) -> str:
        return checked_zone(value)

    @field_validator("hard_limit", "soft_limit")
    @staticmethod
    def _check_limit(value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if value is None:
            return None
        if info.data.get("metric") == "tokens" and value != value.to_integral_value():
            raise ValueError("a tokens budget's limits are whole numbers")
        hard = info.data.get("hard_limit")
        if info.field_name == "soft_limit" and hard is not None and value > hard:
            raise ValueError(f"soft_limit ({value}) is above hard_limit ({hard})")
        return value

    @field_validator("alert_at", mode="before")
    @staticmethod
    def _alert_numbers(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(_decimal(item) for item in value)
        return value

    @field_validator("alert_at")
    @staticmethod
    def _check_alerts(value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if any(not 0 < f <= 1 for f in value):
            raise ValueError("alert_at holds fractions of the limit, 0 < f <= 1")
        if list(value) != sorted(set(value)):
            raise ValueError("alert_at is sorted and without repeats")
        return value

    @field_validator("estimate_price")
    @staticmethod
    def _check_estimate(value: Pricing | None, info: ValidationInfo) -> Pricing | None:
        estimate = info.data.get("unpriced") == "estimate"
        if estimate and value is None:
            raise ValueError("required with unpriced = 'estimate'")
        if value is not None and not estimate and "unpriced" in info.data:
            raise ValueError("only used with unpriced = 'estimate'")
        return value

    @model_validator(mode="after")
    def _some_limit(self) -> Self:
        if self.soft_limit is None and self.hard_limit is None:
            raise ValueError("a budget needs a soft_limit, a hard_limit or both")
        if self.metric == "tokens" and self.unpriced == "estimate":
            raise ValueError("unpriced = 'estimate' is for usd budgets")
        return self

    @property
    def strict(self) -> bool:
        """Whether the defaults lean to blocking: a usd budget with a hard limit."""
        return self.metric == "usd" and self.hard_limit is not None

    @property
    def resolved_unpriced(self) -> Literal["block", "allow", "estimate"]:
        """``unpriced``, its default filled in."""
        if self.unpriced is not None:
            return self.unpriced
        return "block" if self.strict else "allow"

    @property
    def resolved_on_ledger_error(self) -> Literal["block", "allow"]:
        """``on_ledger_error``, its default filled in."""
        if self.on_ledger_error is not None:
            return self.on_ledger_error
        return "block" if self.strict else "allow"
