"""``palyra serve``: the ``/v1`` surface under uvicorn (the ``server`` extra).

``palyra serve --config palyra.toml --host 127.0.0.1 --port 8000
[--workers N] [--no-auth] [--console]``. The configuration is read and checked before
anything starts, so a bad file is a message naming the field, not a server
that fails later; each worker builds its own client from it (the token file
and the ledger are shared through palyra's home).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from .dispatch import config_path
from .output import CommandError

__all__ = ["app_from_environment", "run"]

_CONFIG_ENV = "PALYRA_SERVE_CONFIG"
_NO_AUTH_ENV = "PALYRA_SERVE_NO_AUTH"
_CONSOLE_ENV = "PALYRA_SERVE_CONSOLE"


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise CommandError("needs uvicorn: pip install 'palyra[server]'", 2) from None
    if args.workers < 1 or not 0 < args.port < 65536:
        raise CommandError("--workers must be >= 1 and --port 1-65535", 2)
    if args.console and args.workers > 1:
        # Its sign-in sessions live in the process that made them.
        raise CommandError("--console serves from one worker: drop --workers", 2)
    path = args.serve_config or config_path(args)
    if path is None:
        raise CommandError("give --config palyra.toml (or set PALYRA_CONFIG)", 2)
    from .._config import PalyraConfig

    PalyraConfig.from_file(path)  # checked once, before any worker
    os.environ[_CONFIG_ENV] = os.path.abspath(path)
    os.environ[_NO_AUTH_ENV] = "1" if args.no_auth else ""
    os.environ[_CONSOLE_ENV] = "1" if args.console else ""
    options: dict[str, Any] = {
        "factory": True, "host": args.host, "port": args.port,
        "workers": args.workers, "lifespan": "on", "log_level": "info",
    }  # fmt: skip
    if args.workers > 1:  # uvicorn's supervisor: it ends on a signal only
        uvicorn.run("palyra._cli.serve:app_from_environment", **options)
        return 130
    server = uvicorn.Server(
        uvicorn.Config("palyra._cli.serve:app_from_environment", **options)
    )
    with contextlib.suppress(SystemExit):  # uvicorn's own exit on a failed start
        server.run()
    if not server.started:  # it never served: the port in use, the app failing
        raise CommandError(f"could not serve on {args.host}:{args.port} (see above)")
    # It served until told to stop: Ctrl-C or SIGTERM, as the conventions say.
    return 130 if server.should_exit else 0


def app_from_environment() -> Any:
    """The app a ``palyra serve`` worker runs (uvicorn's factory)."""
    from .._client import Palyra
    from ..asgi import create_app

    client = Palyra.from_file(os.environ[_CONFIG_ENV])
    return create_app(
        client,
        require_auth=not os.environ.get(_NO_AUTH_ENV),
        console=bool(os.environ.get(_CONSOLE_ENV)),
    )
