"""The architecture holds: layers import downward only, packages are entered
through their ``__init__``, and ``import palyra`` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "palyra"

# From the leaves up (docs/architecture.md draws it). Within a layer, a module
# may import the ones listed before it; it may import anything of a lower
# layer, but a package only through its __init__ ("_core", never "_core.x").
# The subsystems to come (_auth, _governance, _routing, _cron, _state) go
# between the core and the client; asgi and the CLI above the client.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "leaves",
        [
            "_version",
            "_exceptions",
            "_addresses",
            "_utils",
            "_headers",
        ],
    ),
    (
        "_tokens",
        ["estimate", "encodings", "budget", "images", "rules", "counter", "__init__"],
    ),
    ("wire", ["_usage", "_explained", "_decision", "_wire"]),
    (
        "_config",
        [
            "base",
            "oauth",
            "providers",
            "models",
            "governance",
            "budgets",
            "jobs",
            "routing",
            "state",
            "observability",
            "root",
            "__init__",
        ],
    ),
    ("registry", ["_checks", "_request", "_registry", "_credentials"]),
    (
        "_providers",
        [
            "sse",
            "accumulator",
            "base",
            "openai",
            "anthropic_stream",
            "anthropic_messages",
            "anthropic",
            "scripted",
            "deterministic",
            "unstreamed",
            "anthropic_checks",
            "anthropic_mock",
            "__init__",
        ],
    ),
    (
        "_core",
        [
            "failures",
            "retry",
            "health",
            "sharing",
            "context",
            "estimates",
            "netguard",
            "sending",
            "pools",
            "connect",
            "steps",
            "errors",
            "hooks",
            "failover",
            "session",
            "attempts",
            "dispatch",
            "pipeline",
            "reading",
            "drivers",
            "streams",
            "__init__",
        ],
    ),
    (
        "_auth",
        [
            "vault",
            "locks",
            "store",
            "oauth",
            "oauth_wire",
            "profiles",
            "steps",
            "login",
            "book",
            "remote",
            "refresh",
            "resolve",
            "gate",
            "keeping",
            "signin",
            "service",
            "__init__",
        ],
    ),
    ("_access", ["tokens", "store", "limits", "service", "__init__"]),
    (
        "_governance",
        [
            "usage",
            "pricing",
            "default_prices",
            "records",
            "ledger",
            "sqlite_schema",
            "sqlite_query",
            "sqlite_writes",
            "sqlite_runs",
            "sqlite_ledger",
            "postgres_schema",
            "postgres_query",
            "postgres_writes",
            "postgres_pool",
            "postgres_ledger",
            "windows",
            "budget_policy",
            "budget_state",
            "budgets",
            "budget_service",
            "prices",
            "held",
            "metering",
            "savings",
            "service",
            "__init__",
        ],
    ),
    (
        "_routing",
        [
            "shares",
            "signals",
            "scoring",
            "candidates",
            "ranking",
            "router",
            "hook",
            "__init__",
        ],
    ),
    (
        "_cron",
        [
            "errors",
            "schedules",
            "policies",
            "runs",
            "timetable",
            "context",
            "running",
            "specs",
            "scheduler",
            "maintenance",
            "__init__",
        ],
    ),
    (
        "_state",
        [
            "errors",
            "scripts",
            "windows",
            "link",
            "batch",
            "parts",
            "settler",
            "views",
            "reboot",
            "budgets",
            "breakers",
            "limits",
            "locks",
            "cron",
            "settings",
            "__init__",
        ],
    ),
    (
        "_observe",
        [
            "events",
            "dispatcher",
            "spans",
            "otel_metrics",
            "tracing",
            "observer",
            "logs",
            "metrics",
            "facade",
            "__init__",
        ],
    ),
    ("client", ["_calls", "_metering", "_choices", "_client"]),
    ("surface", ["testing", "__init__"]),
    (
        "asgi",
        [
            "_errors",
            "_http",
            "_multipart",
            "_schemas",
            "_openapi",
            "_openai",
            "_audio",
            "_anthropic_shape",
            "_anthropic",
            "_sessions",
            "_script",
            "_pages",
            "_usage_page",
            "_usage_data",
            "_budgets_page",
            "_tables_page",
            "_tokens_page",
            "_providers_page",
            "_console_api",
            "_console_pages",
            "_console",
            "_app",
            "__init__",
        ],
    ),
    (
        "_cli",
        [
            "output",
            "parser",
            "dispatch",
            "chat",
            "registry",
            "ledger",
            "auth",
            "jobs",
            "admin",
            "serve",
            "__init__",
        ],
    ),
    ("entry", ["__main__"]),
]
PACKAGES = {name for name, _ in LAYERS if name.startswith("_") or name == "asgi"}


def _dotted(layer: str, module: str) -> str:
    """A module's name relative to palyra ("" is palyra's own __init__)."""
    if layer in PACKAGES:
        return layer if module == "__init__" else f"{layer}.{module}"
    return "" if module == "__init__" else module


ORDER = [_dotted(layer, module) for layer, modules in LAYERS for module in modules]


def _path(dotted: str) -> Path:
    if dotted in PACKAGES or dotted == "":
        return PACKAGE / dotted / "__init__.py"
    return PACKAGE / (dotted.replace(".", "/") + ".py")


def _imports(dotted: str) -> set[str]:
    """What a module imports from palyra at run time (not under TYPE_CHECKING)."""
    path = _path(dotted)
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    here = dotted if is_package else dotted.rpartition(".")[0]
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):  # `import palyra._core.x`
            found.update(
                alias.name.removeprefix("palyra.")
                for alias in node.names
                if alias.name.startswith("palyra.")
            )
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here.split(".") if here else []
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            if node.module is None:  # `from . import x`: x is a submodule
                found.update(f"{target}.{a.name}".lstrip(".") for a in node.names)
                continue
            found.add(target)
        elif node.module and node.module.startswith("palyra."):
            found.add(node.module.removeprefix("palyra."))
    return found


def _allowed(dotted: str) -> set[str]:
    """What ``dotted`` may import: earlier modules, packages whole from outside."""
    own = dotted.split(".")[0] if "." in dotted else dotted
    allowed = set()
    for earlier in ORDER[: ORDER.index(dotted)]:
        package = earlier.split(".")[0]
        if "." in earlier and package != own:
            continue  # another package's insides: import the package instead
        allowed.add(earlier)
    return allowed


@pytest.mark.parametrize("dotted", ORDER)
def test_modules_import_only_lower_layers(dotted: str) -> None:
    """No module reaches up the stack, or into another package's modules."""
    assert _imports(dotted) <= _allowed(dotted)


def test_every_module_has_a_layer() -> None:
    """New modules must be placed in LAYERS."""
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.add(".".join(parts))
    assert modules == set(ORDER)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_says_what_it_is_for_and_may_import(package: str) -> None:
    """A package's __init__ docstring is its contract with the rest of palyra."""
    docstring = ast.get_docstring(ast.parse(_path(package).read_text())) or ""
    assert "What it is for" in docstring
    assert "May import" in docstring


def test_the_core_never_imports_a_subsystem_or_the_client() -> None:
    """The layering rules above, spelled out for the core: subsystems join
    through hooks that the client wires."""
    core = [d for d in ORDER if d == "_core" or d.startswith("_core.")]
    above = {
        "_client",
        "testing",
        "_auth",
        "_governance",
        "_routing",
        "_cron",
        "_state",
        "_observe",
    }
    for dotted in core:
        assert not {i.split(".")[0] for i in _imports(dotted)} & above, dotted


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
         ("tiktoken", "tiktoken_ext", "keyring", "croniter", "tenacity", "psycopg")
         or m.rsplit(".", 1)[-1] in ("openai", "anthropic", "deterministic")]
print(heavy, [e for e in events if not e.endswith(("/", "site-packages"))])
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[] []"


def test_building_a_client_loads_nothing_a_sign_in_or_a_loop_needs() -> None:
    """Palyra(...) with an auth profile configured loads neither asyncio (the
    app's loop brings it), nor http.server or webbrowser (a sign-in does),
    nor the keyring, and opens nothing of palyra's (pydantic's own reading of
    installed packages' metadata aside)."""
    code = """
import sys
events = []
def hook(event, args):
    if event == "open" and args[0] is not None:
        path = str(args[0])
        if not path.endswith((".py", ".pyc", ".so", ".pth")):
            events.append(path)
sys.addaudithook(hook)
import palyra
config = {"providers": [{"id": "up", "kind": "openai", "auth_profile": "work"}],
          "models": [{"id": "m", "provider": "up"}]}
palyra.Palyra(config, home="/nonexistent/palyra-home")
loaded = [m for m in ("asyncio", "http.server", "webbrowser", "keyring", "sqlite3")
          if m in sys.modules]
print(loaded, [e for e in events if "palyra-home" in e])
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[] []"


def test_no_module_is_over_500_lines() -> None:
    """Modules stay small (style.md): a module past 500 lines is split."""
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}
