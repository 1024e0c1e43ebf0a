"""The README's two commands stay true and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", readme)


def test_readme_has_the_two_setup_commands() -> None:
    """One command runs the quickstart, one runs the whole suite."""
    quickstart, tests = _commands()[:2]
    assert quickstart.endswith("python examples/quickstart.py")
    assert "pip install -e ." in quickstart
    assert (ROOT / "examples" / "quickstart.py").is_file()
    assert "python -m pytest" in tests
    assert tests.endswith("python -m pytest")


def test_socket_guard_is_always_on() -> None:
    """Plain `pytest` blocks every socket beyond loopback."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "--disable-socket" in pyproject
    assert "--allow-hosts=127.0.0.1,localhost,::1" in pyproject


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run installs and tests exactly as the README says."""
    tests = _commands()[1]
    install_and_test = tests.split("&& ", 2)[2]
    assert install_and_test in (ROOT / ".ci" / "run").read_text()
