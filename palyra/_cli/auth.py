"""``palyra auth`` (profiles in the OS keyring: an API key read without echo,
never from the command line; OAuth through the loopback helper; list,
refresh, revoke) and ``palyra tokens`` (the ``/v1`` surface's API tokens)."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from .dispatch import client_from
from .output import CommandError, emit_rows, waiting

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``auth ...`` or ``tokens ...``."""
    with client_from(args) as client:
        if args.command == "tokens":
            return _tokens(client, args)
        return _AUTH[args.action](client, args)


def _connect(client: Any, args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        key = getpass.getpass(f"API key for {args.provider} (not echoed): ")
    else:  # piped: `pass show openai | palyra auth connect openai`
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        raise CommandError("no key given", 2)
    scope = f"agent:{args.agent}" if args.agent else "global"
    with waiting(f"checking the key with {args.provider}"):
        profile = client.auth.connect_api_key(
            args.provider, key, name=args.name, scope=scope, validate=not args.no_check
        )
    del key
    print(
        f"connected {profile.id} ({profile.provider}, {profile.scope});"
        " the key is in the keyring"
    )
    return 0


def _login(client: Any, args: argparse.Namespace) -> int:
    def announce(url: str) -> None:
        print(f"open this address to sign in:\n  {url}", file=sys.stderr)
        if not args.no_browser:
            import webbrowser

            webbrowser.open(url)

    profile = client.auth.login_oauth(
        args.provider, open_browser=announce, name=args.name
    )
    print(
        f"signed in: {profile.id} ({profile.provider}),"
        f" token expires {profile.expires_at}"
    )
    return 0


def _list(client: Any, args: argparse.Namespace) -> int:
    profiles = client.auth.health()
    rows = [
        [p.id, p.provider, p.kind, p.scope, p.health,
         p.expires_at.isoformat(timespec="minutes") if p.expires_at else None,
         p.refresh_error]
        for p in profiles
    ]  # fmt: skip
    headers = [
        "profile",
        "provider",
        "kind",
        "scope",
        "health",
        "expires",
        "last refresh error",
    ]
    emit_rows(
        headers, rows, args.json, "(no auth profiles: palyra auth connect PROVIDER)"
    )
    return 0


def _refresh(client: Any, args: argparse.Namespace) -> int:
    with waiting(f"refreshing {args.profile_id}"):
        profile = client.auth.refresh(args.profile_id)
    print(f"refreshed {profile.id}: expires {profile.expires_at}")
    return 0


def _revoke(client: Any, args: argparse.Namespace) -> int:
    with waiting(f"revoking {args.profile_id}"):
        client.auth.revoke(args.profile_id)
    print(f"revoked {args.profile_id}: its secrets are gone from the keyring")
    return 0


_AUTH = {"connect": _connect, "login": _login, "list": _list, "refresh": _refresh,
         "revoke": _revoke}  # fmt: skip


def _tokens(client: Any, args: argparse.Namespace) -> int:
    tokens = client.tokens
    if args.action == "create":
        expires = None
        if args.days is not None:
            expires = datetime.now(UTC) + timedelta(days=args.days)
        options: dict[str, Any] = {"agent": args.agent, "rate_limit": args.rate_limit,
                                   "expires_at": expires}  # fmt: skip
        if args.scope:
            options["scopes"] = tuple(args.scope)
        info, secret = tokens.create(args.name, **options)
        print(
            f"{info.id} ({', '.join(info.scopes)}): shown once, keep it now:",
            file=sys.stderr,
        )
        print(secret)
        return 0
    if args.action == "revoke":
        info = tokens.revoke(args.token_id)
        print(f"revoked {info.id} ({info.name})")
        return 0
    rows = [
        [t.id, t.name, ",".join(t.scopes), t.agent, t.rate_limit,
         t.expires_at.isoformat(timespec="minutes") if t.expires_at else None,
         "revoked" if t.revoked_at else "active"]
        for t in tokens.list()
    ]  # fmt: skip
    headers = ["token", "name", "scopes", "agent", "per minute", "expires", "state"]
    emit_rows(headers, rows, args.json, "(no API tokens: palyra tokens create NAME)")
    return 0
