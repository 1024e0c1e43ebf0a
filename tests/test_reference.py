"""The API reference is complete (issue 15): every public name of palyra has
a docstring and an entry in docs/reference.md, which mkdocstrings renders
from those docstrings (``mkdocs build --strict`` runs in CI)."""

from __future__ import annotations

import re
from pathlib import Path

import palyra
import palyra.asgi
import palyra.testing

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
PUBLIC = [name for name in palyra.__all__ if name != "__version__"]


def test_every_public_name_has_a_docstring() -> None:
    missing = [name for name in PUBLIC if not _documented(getattr(palyra, name))]
    assert missing == []
    for module in (palyra.asgi, palyra.testing):
        for name in module.__all__:
            assert (getattr(module, name).__doc__ or "").strip(), (
                f"{module.__name__}.{name}"
            )


def _documented(obj: object) -> bool:
    own = (obj.__doc__ or "").strip()
    # An instance (a constant) would show its class's docstring: not its own.
    inherited = not isinstance(obj, type) and not callable(obj)
    return bool(own) and not inherited


def test_every_public_name_is_in_the_reference() -> None:
    listed = set(re.findall(r"^::: palyra\.([A-Za-z_]+)$", REFERENCE.read_text(), re.M))
    assert sorted(set(PUBLIC) - listed) == []
    assert sorted(listed - set(PUBLIC) - {"asgi", "testing"}) == []
    for name in palyra.asgi.__all__:
        assert f"::: palyra.asgi.{name}" in REFERENCE.read_text(), name
