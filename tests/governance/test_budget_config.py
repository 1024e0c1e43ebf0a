"""The ``[[budgets]]`` table: what it accepts, and the path of every refusal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from palyra._config import BudgetConfig, PalyraConfig, parse_window
from palyra._exceptions import ConfigError


def _errors(*budgets: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        PalyraConfig.from_dict({"budgets": list(budgets)})
    return caught.value.errors


def _paths(*budgets: dict[str, Any]) -> list[str]:
    return [path for path, _ in _errors(*budgets)]


def test_defaults() -> None:
    cfg = BudgetConfig(id="Daily", hard_limit=5)
    assert cfg.id == "daily"
    assert (cfg.metric, cfg.scope, cfg.value, cfg.window, cfg.tz) == (
        "usd",
        "global",
        None,
        "lifetime",
        "UTC",
    )
    assert cfg.alert_at == (Decimal("0.5"), Decimal("0.8"), Decimal("1"))
    assert cfg.hard_limit == Decimal(5)
    assert cfg.soft_limit is None


def test_a_full_table_from_toml(tmp_path: Any) -> None:
    path = tmp_path / "palyra.toml"
    path.write_text(
        """
[[budgets]]
id = "daily"
scope = "agent"
value = "bot"
window = "day"
tz = "Europe/Paris"
soft_limit = 4.2
hard_limit = 5
alert_at = [0.25, 0.9]
unpriced = "estimate"
estimate_price = { input = "3", output = "15" }
on_ledger_error = "allow"

[[budgets]]
id = "tokens"
metric = "tokens"
scope = "tag:team"
window = "7d"
hard_limit = 1000000
""",
        encoding="utf-8",
    )
    cfg = PalyraConfig.from_file(path)
    daily, tokens = cfg.budgets
    assert daily.soft_limit == Decimal("4.2")  # via str(): no binary tail
    assert daily.alert_at == (Decimal("0.25"), Decimal("0.9"))
    assert daily.estimate_price is not None
    assert daily.estimate_price.output == Decimal(15)
    assert daily.resolved_unpriced == "estimate"
    assert daily.resolved_on_ledger_error == "allow"
    assert tokens.scope == "tag:team"
    assert tokens.window == "7d"
    assert tokens.hard_limit == 1_000_000


@pytest.mark.parametrize(
    ("fields", "unpriced", "ledger"),
    [
        ({"hard_limit": 5}, "block", "block"),
        ({"soft_limit": 5}, "allow", "allow"),
        ({"metric": "tokens", "hard_limit": 5}, "allow", "allow"),
        ({"hard_limit": 5, "unpriced": "allow"}, "allow", "block"),
    ],
)
def test_resolved_defaults(fields: dict[str, Any], unpriced: str, ledger: str) -> None:
    cfg = BudgetConfig(id="b", **fields)
    assert cfg.unpriced == fields.get("unpriced")  # kept as given
    assert cfg.resolved_unpriced == unpriced
    assert cfg.resolved_on_ledger_error == ledger


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"scope": "team"}, "budgets[0].scope"),
        ({"scope": "tag:"}, "budgets[0].scope"),
        ({"scope": "tag:Team"}, "budgets[0].scope"),
        ({"hard_limit": -1}, "budgets[0].hard_limit"),
        ({"soft_limit": "-0.01"}, "budgets[0].soft_limit"),
        ({"hard_limit": "lots"}, "budgets[0].hard_limit"),
        ({"hard_limit": True}, "budgets[0].hard_limit"),
        ({"hard_limit": "NaN"}, "budgets[0].hard_limit"),
        ({"soft_limit": 6}, "budgets[0].soft_limit"),
        ({"tz": "Mars/Olympus_Mons"}, "budgets[0].tz"),
        ({"tz": "../etc/passwd"}, "budgets[0].tz"),
        ({"window": "fortnight"}, "budgets[0].window"),
        ({"window": "0h"}, "budgets[0].window"),
        ({"window": "367d"}, "budgets[0].window"),
        ({"window": "24 h"}, "budgets[0].window"),
        ({"value": "bot"}, "budgets[0].value"),
        ({"id": "no spaces"}, "budgets[0].id"),
        ({"metric": "eur"}, "budgets[0].metric"),
        ({"metric": "tokens", "hard_limit": 10.5}, "budgets[0].hard_limit"),
        ({"alert_at": [0.8, 0.5]}, "budgets[0].alert_at"),
        ({"alert_at": [0.5, 0.5]}, "budgets[0].alert_at"),
        ({"alert_at": [0, 0.5]}, "budgets[0].alert_at"),
        ({"alert_at": [1.5]}, "budgets[0].alert_at"),
        ({"unpriced": "estimate"}, "budgets[0].estimate_price"),
        ({"estimate_price": {"input": 1, "output": 1}}, "budgets[0].estimate_price"),
        ({"unpriced": "free"}, "budgets[0].unpriced"),
        ({"on_ledger_error": "retry"}, "budgets[0].on_ledger_error"),
        ({"limit": 5}, "budgets[0].limit"),
    ],
)
def test_each_bad_field_is_named(fields: dict[str, Any], path: str) -> None:
    entry = {"id": "b", "hard_limit": 5, **fields}
    assert path in _paths(entry)


def test_soft_above_hard_says_both() -> None:
    ((path, message),) = _errors({"id": "b", "soft_limit": 6, "hard_limit": 5})
    assert path == "budgets[0].soft_limit"
    assert "6" in message
    assert "5" in message


def test_a_limit_is_required() -> None:
    assert _errors({"id": "b"}) == [
        ("budgets[0]", "a budget needs a soft_limit, a hard_limit or both")
    ]


def test_duplicate_ids() -> None:
    errors = _errors({"id": "a", "hard_limit": 1}, {"id": "A", "hard_limit": 2})
    assert errors == [("budgets[1].id", "duplicate budget id 'a'")]


def test_errors_of_the_second_entry_name_it() -> None:
    assert _paths({"id": "a", "hard_limit": 1}, {"id": "b", "scope": "x"}) == [
        "budgets[1].scope"
    ]


def test_value_is_allowed_for_a_scope_with_values() -> None:
    cfg = BudgetConfig(id="b", scope="principal", value="alice", soft_limit=1)
    assert cfg.value == "alice"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("lifetime", ("lifetime", None)),
        ("day", ("day", None)),
        ("week", ("week", None)),
        ("month", ("month", None)),
        ("90m", ("rolling", 5400)),
        ("24h", ("rolling", 86_400)),
        ("7d", ("rolling", 604_800)),
        ("2w", ("rolling", 1_209_600)),
        ("366d", ("rolling", 366 * 86_400)),
        ("30s", ("rolling", 30)),
    ],
)
def test_parse_window(text: str, parsed: tuple[str, int | None]) -> None:
    assert parse_window(text) == parsed


@pytest.mark.parametrize("text", ["", "Day", "1y", "-1h", "h", "53w", "1.5h"])
def test_parse_window_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="rolling"):
        parse_window(text)
