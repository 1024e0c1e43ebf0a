"""Layers only import layers below them; import stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "palyra"

# From the leaves up: a module may import only modules earlier in this list.
LAYERS = [
    "_version",
    "_exceptions",
    "_utils",
    "_tokens",
    "_providers.sse",
    "_wire",
    "_config",
    "_core.retry",
    "_core.health",
    "_request",
    "_registry",
    "_core.failover",
    "_providers.accumulator",
    "_credentials",
    "_providers.base",
    "_providers.openai",
    "_providers.anthropic_stream",
    "_providers.anthropic",
    "_providers.deterministic",
    "_core.netguard",
    "_core.steps",
    "_core.session",
    "_core.dispatch",
    "_core.pipeline",
    "_core.drivers",
    "_core.streams",
    "_client",
]


def _palyra_imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0] if "." in module else ""
    # Imports for annotations only (under `if TYPE_CHECKING:`) never run.
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package if node.level == 1 else ""
            if node.module is None:  # `from . import _module`
                found.update(f"{base}.{a.name}".lstrip(".") for a in node.names)
                continue
            target = f"{base}.{node.module}" if base else node.module
            found.add(target.lstrip("."))
    return found


@pytest.mark.parametrize("module", LAYERS)
def test_module_imports_only_lower_layers(module: str) -> None:
    """No module reaches up the stack."""
    path = PACKAGE / (module.replace(".", "/") + ".py")
    allowed = set(LAYERS[: LAYERS.index(module)]) | {"_providers", "_core"}
    assert _palyra_imports(path, module) <= allowed


def test_every_module_has_a_layer() -> None:
    """New modules must be placed in LAYERS."""
    modules = {
        str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".")
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules <= set(LAYERS) | {"testing"}


def test_import_is_light() -> None:
    """import palyra loads no adapter, tokenizer or keyring, and opens no file
    or socket beyond its own modules."""
    code = """
import sys
events = []
def hook(event, args):
    if event == "open" and args[0] is not None:
        path = str(args[0])
        if not path.endswith((".py", ".pyc", ".so", ".pth")):
            events.append(path)
    elif event.startswith("socket."):
        events.append(event)
sys.addaudithook(hook)
import palyra
heavy = [m for m in sys.modules if m.split(".")[0] in
         ("tiktoken", "tiktoken_ext", "keyring", "croniter", "tenacity")
         or m.rsplit(".", 1)[-1] in ("openai", "anthropic", "deterministic")]
print(heavy, [e for e in events if not e.endswith(("/", "site-packages"))])
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[] []"
