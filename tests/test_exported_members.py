"""The public surface is exactly palyra.__all__, sorted, and says `palyra.X`."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
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


def test_annotations_resolve_in_the_public_namespace() -> None:
    """Names load lazily, but as a whole: in a fresh process, the first use
    of one makes every public annotation resolvable (as docs tools need)."""
    code = (
        "import typing, palyra; palyra.PalyraInfo;"
        " print(sorted(typing.get_type_hints(palyra.PalyraInfo))[:3])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "['agent', 'attempts', 'cost']"


def test_the_sources_map_matches_the_typing_imports() -> None:
    """palyra._SOURCES and the TYPE_CHECKING imports name the same things."""
    tree = ast.parse(inspect.getsource(palyra))
    typed: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        imported = isinstance(node, ast.ImportFrom) and node.level == 1
        if imported and node.module and node.module != "_version":
            typed.setdefault("." + node.module, set()).update(
                alias.name for alias in node.names
            )
    assert typed == {module: set(names) for module, names in palyra._SOURCES.items()}


def test_the_testing_module_exports_what_it_defines_documented() -> None:
    """palyra.testing is public too: __all__ names the classes it defines, and
    each, with every public method and attribute set up, has a docstring."""
    import palyra.testing as testing

    defined = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == "palyra.testing"
    }
    assert testing.__all__ == sorted(defined) == ["AnthropicMock", "OpenAIMock"]
    for name in testing.__all__:
        cls = getattr(testing, name)
        assert inspect.getdoc(cls), name
        methods = [m for m in dir(cls) if not m.startswith("_")]
        assert set(methods) == {"enqueue", "handle"}, name
        for method in methods:
            assert inspect.getdoc(getattr(cls, method)), f"{name}.{method}"
        mock = cls(models=["m"])
        assert {a for a in vars(mock) if not a.startswith("_")} == {
            "history",
            "models",
            "transport",
        }
