"""The ``palyra`` command (``[project.scripts]`` and ``python -m palyra``).

What it is for: each capability reachable from a shell: ``chat``, ``models``,
``route``, ``auth``, ``tokens``, ``usage``, ``budgets``, ``jobs``, ``config``,
``doctor`` and ``serve``. Arguments are parsed with the standard library
alone (``parser``); a command's module, and the client, load only once that
command runs, so ``palyra --help`` costs the interpreter's start.

May import: everything of palyra (it is the top of the layers, beside
``asgi``), the standard library; uvicorn for ``serve`` only.

Conventions: ``--config`` or ``$PALYRA_CONFIG``; exit 0 on success, 1 when an
operation fails, 2 on a usage error, 130 on Ctrl-C; one line on stderr per
error, a traceback only with ``--debug``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .parser import build

    args = build().parse_args(argv)  # exits 2 on a usage error, 0 for --help
    import warnings

    # palyra's warnings (an inline key...) as one line each, like its errors.
    warnings.showwarning = _one_line
    from .dispatch import run

    try:
        return run(args)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130


def _one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"palyra: warning: {' '.join(str(message).split())}", file=sys.stderr)
