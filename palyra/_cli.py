"""The ``palyra`` command: ``palyra serve`` runs the ``/v1`` surface under
uvicorn (the ``server`` extra).

``palyra serve --config palyra.toml --host 127.0.0.1 --port 8000
[--workers N] [--no-auth]``. The configuration is read and checked before
anything starts, so a bad file is a message naming the field, not a server
that fails later; each worker builds its own client from it (the token file
and the ledger are shared through palyra's home).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._client import Palyra
from ._config import PalyraConfig
from ._exceptions import ConfigError
from .asgi import create_app

__all__ = ["main"]

_CONFIG_ENV = "PALYRA_SERVE_CONFIG"
_NO_AUTH_ENV = "PALYRA_SERVE_NO_AUTH"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="palyra", description="palyra's command line")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the /v1 surface under uvicorn")
    serve.add_argument("--config", required=True, help="the palyra TOML file")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="default: 8000")
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serve.add_argument(
        "--no-auth", action="store_true", help="serve callers without an API token"
    )
    args = parser.parse_args(argv)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print(
            "palyra serve needs uvicorn: pip install 'palyra[server]'", file=sys.stderr
        )
        return 2
    if args.workers < 1 or not 0 < args.port < 65536:
        print(
            "palyra serve: --workers must be >= 1 and --port 1-65535", file=sys.stderr
        )
        return 2
    try:
        PalyraConfig.from_file(args.config)  # checked once, before any worker
    except ConfigError as exc:
        print(f"palyra serve: {exc}", file=sys.stderr)
        return 2
    os.environ[_CONFIG_ENV] = os.path.abspath(args.config)
    os.environ[_NO_AUTH_ENV] = "1" if args.no_auth else ""
    uvicorn.run(
        "palyra._cli:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        lifespan="on",
        log_level="info",
    )
    return 0


def app_from_environment() -> Any:
    """The app a ``palyra serve`` worker runs (uvicorn's factory)."""
    client = Palyra.from_file(os.environ[_CONFIG_ENV])
    return create_app(client, require_auth=not os.environ.get(_NO_AUTH_ENV))
