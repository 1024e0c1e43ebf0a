"""The public surface is exactly palyra.__all__, sorted, and says `palyra.X`."""

from __future__ import annotations

import types

import palyra


def test_all_is_complete() -> None:
    """__all__ lists every public name once (ruff's RUF022 keeps it sorted)."""
    public = {
        name
        for name, value in vars(palyra).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
    } | set(palyra._LAZY)
    assert len(palyra.__all__) == len(set(palyra.__all__))
    assert set(palyra.__all__) == public


def test_exports_report_the_public_module() -> None:
    """Reprs and tracebacks say palyra.X, not a private module."""
    for name in palyra.__all__:
        if name != "__version__":
            assert getattr(palyra, name).__module__ == "palyra", name


def test_lazy_exports_resolve() -> None:
    """Lazily imported names are real attributes."""
    assert palyra.DeterministicBackend.__name__ == "DeterministicBackend"
    assert palyra.ScriptedReply(content="x").content == "x"
