"""Running a parsed command: the client it needs, the command's module
(loaded only now), and how a failure is reported."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from typing import Any

from .output import CommandError

__all__ = ["client_from", "config_path", "run"]

# The module that carries out each command (its ``run(args)``).
_MODULES = {
    "chat": "chat",
    "models": "registry",
    "route": "registry",
    "auth": "auth",
    "tokens": "auth",
    "usage": "ledger",
    "budgets": "ledger",
    "jobs": "jobs",
    "config": "admin",
    "doctor": "admin",
    "serve": "serve",
}


def run(args: argparse.Namespace) -> int:
    """Carry out ``args.command``; the exit status."""
    module = importlib.import_module(f"{__package__}.{_MODULES[args.command]}")
    try:
        status: int = module.run(args)
        return status
    except CommandError as exc:
        return _report(args, exc, exc.status)
    except BrokenPipeError:  # `palyra usage | head`: the reader left
        with contextlib.suppress(Exception):
            sys.stdout.close()
        return 0
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a PalyraError names what is wrong; others too
        from .._exceptions import ConfigError, InvalidRequestError

        # A configuration that does not load, or a value palyra refuses (a bad
        # --by, --tz, --agent, --scope), is bad input, as a bad flag is.
        usage = isinstance(exc, (ConfigError, InvalidRequestError, ValueError))
        return _report(args, exc, 2 if usage else 1)


def _report(args: argparse.Namespace, exc: BaseException, status: int) -> int:
    if getattr(args, "debug", False):
        traceback.print_exception(exc, file=sys.stderr)
    name = "" if isinstance(exc, CommandError) else f"{type(exc).__name__}: "
    text = " ".join(str(exc).split()) or type(exc).__name__
    print(f"palyra {args.command}: {name}{text}", file=sys.stderr)
    return status


def config_path(args: argparse.Namespace) -> str | None:
    """The configuration file: ``--config``, else ``$PALYRA_CONFIG``."""
    return getattr(args, "config", None) or os.environ.get("PALYRA_CONFIG") or None


def client_from(args: argparse.Namespace) -> Any:
    """The client of the command's configuration (the offline deterministic
    provider when there is none).

    Raises:
        ConfigError: the file is invalid, naming each field.
    """
    from .._client import Palyra

    path = config_path(args)
    if path is None:
        return Palyra()
    if not os.path.exists(path):
        raise CommandError(f"no configuration file {path!r}", 2)
    return Palyra.from_file(path)
