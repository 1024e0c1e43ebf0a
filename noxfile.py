"""Developer tasks: `nox -s tests lint typecheck docs bench ab`."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite, sockets limited to loopback."""
    session.install("-e", ".[dev,docs]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("-e", ".[dev]")  # the pinned ruff
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy, strict on palyra/."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the docs strictly."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (not part of the tests); prints figures for docs/performance.md."""
    session.install("-e", ".[dev,server]")
    # LiteLLM's proxy, measured beside the /v1 surface, lives in a venv of its
    # own: a benchmark-only install, never a palyra dependency
    litellm = Path(".nox") / "litellm"
    if not (litellm / "bin" / "litellm").exists():
        session.run("python", "-m", "venv", str(litellm), external=True)
        session.run(
            str(litellm / "bin" / "pip"),
            "install",
            "-q",
            "litellm[proxy]",
            external=True,
            success_codes=[0, 1],  # not installable here: the bench skips it
        )
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python="3.11")
def ab(session: nox.Session) -> None:
    """A/B against a base revision in one run: `nox -s ab -- --base REV`."""
    session.install("-e", ".[dev]")
    session.run("python", "bench/ab.py", *(session.posargs or ["--base", "HEAD~1"]))
